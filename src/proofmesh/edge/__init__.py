"""proofmesh.edge"""
