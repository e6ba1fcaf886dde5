"""The deploy pages and live events (contract §8): HTML pages, SSE, signed view links."""
