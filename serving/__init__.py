"""Scoring surfaces on the registered champion: the batch scorer and the REST service."""
