"""What tests share: paths, schemas, ports, servers, and test-side wrappers of the code under test."""
