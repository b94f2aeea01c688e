"""Model families shipped with bionemo-lite, each registered through an entry point."""
