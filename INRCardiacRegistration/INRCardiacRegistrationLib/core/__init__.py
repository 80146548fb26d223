"""Layer 0, the core: images and grids in physical space (LPS mm), masks and signed distances, metrics, files
written atomically, folder locks, and the words every layer shares (:mod:`.vocabulary`). numpy, SciPy and
SimpleITK only: no torch, nothing from the layers above."""
