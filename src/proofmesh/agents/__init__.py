"""proofmesh.agents"""
