"""A real MRML scene without the Slicer application, from the PyPI ``slicer-core`` wheel (see
../shared/docs/slicer-notes.md): scene, cache and data-IO managers, application logic, and the module logics the
bridge uses, registered as Slicer registers them and exposed as ``slicer.modules.<name>.logic()``."""

from __future__ import annotations

import tempfile
import types

import slicer

MODULE_LOGICS = {
    "sequences": "vtkSlicerSequencesLogic",
    "markups": "vtkSlicerMarkupsLogic",
    "segmentations": "vtkSlicerSegmentationsModuleLogic",
    "transforms": "vtkSlicerTransformLogic",
    "volumes": "vtkSlicerVolumesLogic",
    "tables": "vtkSlicerTablesLogic",
    "plots": "vtkSlicerPlotsLogic",
}


def new_scene():
    """A fresh scene set as ``slicer.mrmlScene``, with its module logics in ``slicer.modules``."""
    scene = slicer.vtkMRMLScene()
    cache = slicer.vtkCacheManager()
    cache.SetRemoteCacheDirectory(tempfile.mkdtemp(prefix="mrml-cache-"))
    scene.SetCacheManager(cache)
    data_io = slicer.vtkDataIOManager()
    data_io.SetCacheManager(cache)
    scene.SetDataIOManager(data_io)
    application = slicer.vtkSlicerApplicationLogic()
    application.SetMRMLScene(scene)
    application.GetColorLogic().SetMRMLScene(scene)
    application.GetColorLogic().AddDefaultColorNodes()
    modules = {}
    for name, class_name in MODULE_LOGICS.items():
        logic = getattr(slicer, class_name)()
        logic.SetMRMLApplicationLogic(application)
        logic.SetMRMLScene(scene)
        application.SetModuleLogic(name.capitalize(), logic)
        modules[name] = types.SimpleNamespace(logic=lambda logic=logic: logic)
    slicer.mrmlScene = scene
    slicer.modules = types.SimpleNamespace(**modules)
    scene.application_logic = application  # keep the logics alive as long as the scene
    return scene


def read_node(scene, class_name: str, storage_class, path):
    """A new node of ``class_name`` read from ``path`` by Slicer's own ``storage_class`` (as Slicer loads files)."""
    node = scene.AddNewNodeByClass(class_name)
    storage = storage_class()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(node), path
    return node
