"""proofmesh.store: content-addressed blobs on disk, served and fetched over HTTP by CID."""
