"""Data preparation: per-variant mixtures, chat templates with loss masks, packing, caching.

``prepare(variant, out, ...)`` writes the packed dataset format of docs/DEVELOPING.md;
``load_packed(dir)`` reads it back as a ``datasets.Dataset``. See docs/data.md.
"""

from latxa.components.data.load import load_packed, read_manifest
from latxa.components.data.prepare import PrepareResult, prepare
from latxa.components.data.sources import DEFAULT_DATA_CONFIG, DataError, load_data_config

__all__ = ["prepare", "load_packed", "read_manifest", "PrepareResult", "DataError", "load_data_config",
           "DEFAULT_DATA_CONFIG"]
