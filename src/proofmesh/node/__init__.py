"""proofmesh.node"""
