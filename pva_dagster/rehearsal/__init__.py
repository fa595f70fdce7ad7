"""Offline stand-ins for the study profile's hub files (rehearsal, tests, benchmarks)."""
