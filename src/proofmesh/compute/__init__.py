"""proofmesh.compute"""
