"""What ingest does for a caller, one function each; the route only reads the body and answers."""
