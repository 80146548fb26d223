"""Reading images while another thread reads transform files: ITK's HDF5 is not thread-safe, and an image read
reaches it (the image-IO factory asks the HDF5 reader whether it can read the file). Without the shared lock this
failed in 3 of 3 runs of 300 reads here ("H5Dread failed"); the report thread of ``finish_run_outputs`` reads
images while the function measurement reads the transforms, which is how it was found (a CI failure)."""

from __future__ import annotations

import threading

import numpy as np
from INRCardiacRegistrationLib.core.geometry import Geometry
from INRCardiacRegistrationLib.core.volume import Volume
from INRCardiacRegistrationLib.fileio.displacement_field import read_displacement_field, write_displacement_field


def test_image_reads_and_transform_reads_in_two_threads(tmp_path):
    geometry = Geometry(size=(24, 20, 16), spacing=(1.0, 1.5, 2.0), origin=(0.0, 0.0, 0.0))
    image_path = Volume(np.zeros(geometry.array_shape, np.float32), geometry, "image").write(tmp_path / "a.nii.gz")
    field = np.random.default_rng(0).normal(size=(*geometry.array_shape, 3))
    field_path = write_displacement_field(tmp_path / "field.h5", field, geometry)
    stop, errors = threading.Event(), []

    def read_images() -> None:
        try:
            while not stop.is_set():
                Volume.read(image_path)
        except Exception as error:  # noqa: BLE001 - any failure in the thread fails the test
            errors.append(error)

    thread = threading.Thread(target=read_images)
    thread.start()
    try:
        for _ in range(300):
            read, _geometry = read_displacement_field(field_path)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    np.testing.assert_array_equal(read, field)
