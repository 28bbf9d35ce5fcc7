"""Starts the segapp web demo (see docs/demo.md); host and port from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT."""

from segapp.demo import main

main()
