"""What every room stands on: argument checks and JSON reading (`checks`), finding a model directory (`hub`)."""
