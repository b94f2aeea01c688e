"""The thin FastAPI service over the bionemo_lite core."""
