"""Using a trained generator: find it (a checkpoint, a training folder or a search's trial), load
it for inference, apply it to audio (``enhance``, ``vocode``) and export it for other tools.

No Ray here: a search is read from its files (``trials.parquet``, ``trials/<id>/``).
"""
