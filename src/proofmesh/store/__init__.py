"""proofmesh.store"""
