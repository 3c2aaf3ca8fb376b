"""proofmesh.crypto"""
