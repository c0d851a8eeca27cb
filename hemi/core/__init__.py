"""Components, the sign registry, the stage lifecycle, fixtures and logging."""
