"""acnzip: lossless compression of whole image datasets with Associative Compression Networks."""
__version__ = "0.1.0"
