"""Console commands declared in pyproject (``pva-clean-data``, ``pva-check-gpu``, ``pva-study``)."""
