"""proofmesh.cli"""
