"""Offline stand-ins for the gemma profile's hub files (rehearsal, tests, benchmarks)."""
