"""proofmesh.inference"""
