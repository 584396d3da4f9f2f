"""Batch prediction over files: on this machine (``local``) or on Ray Data (``ray_engine``)."""
