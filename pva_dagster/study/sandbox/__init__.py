"""Running model-written code (hostile input) against the asserts, isolated and limited."""
