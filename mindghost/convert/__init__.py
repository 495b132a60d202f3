"""Weight conversion CLI: `python -m mindghost.convert` (`convert.py`). The torch-free `.pth` reader it uses lives in
`mindghost.weights` (`read_pth`, `load_pth`, `unwrap_state_dict`)."""
