"""Speed: throughput and training time, each figure printed with the machine's CPU line."""
