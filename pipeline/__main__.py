"""``python -m pipeline`` runs the command line."""

from pipeline.launch import main

main()
