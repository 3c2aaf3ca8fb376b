"""proofmesh.models"""
