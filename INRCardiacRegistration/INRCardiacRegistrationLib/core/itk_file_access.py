"""One lock for SimpleITK file access that can reach ITK's HDF5 library.

ITK's bundled HDF5 is built without thread safety. Transform files (``.h5``) are HDF5, and reading *any* image
reaches HDF5 too: ITK's image-IO factory asks every registered reader, the HDF5 one included, whether it can read
the file, and that one opens the file with HDF5 to find out. Two threads in HDF5 at once corrupt its state (seen:
``H5Dread failed``, "no VOL object wrap context", a segmentation fault in ``ReadTransform``). So every read of an
image or transform file, and every write of a transform file, takes :data:`ITK_FILE_ACCESS`. Writing images
(``.nii.gz``, ``.nrrd``, ``.mha``) picks its writer by suffix and never reaches HDF5, so image writes run freely.
The lock is within one process; separate processes have separate HDF5 states.
"""

from __future__ import annotations

import threading

ITK_FILE_ACCESS = threading.RLock()
