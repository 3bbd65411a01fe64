"""Chapter-level experiments: each function runs one grid of the book and returns a DataFrame."""
