"""proofmesh.chain"""
