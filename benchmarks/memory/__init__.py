"""Memory: peak resident memory against input size, with the machine's CPU line."""
