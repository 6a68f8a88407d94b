//! `.dockerignore` parsing and matching with Docker's semantics (being written).
