"""proofmesh.data"""
