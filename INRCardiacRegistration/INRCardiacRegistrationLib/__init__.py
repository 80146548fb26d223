"""INRCardiacRegistrationLib: left-ventricle myocardium tracking through a cardiac cycle by deformable
registration with implicit neural representations (SIREN) guided by the myocardium's signed distance field.

Importable without 3D Slicer or Qt. Physical coordinates are LPS millimetres unless a name says otherwise.
"""

__version__ = "0.1.0"


def forget_loaded_modules() -> list[str]:
    """Drop this package and its submodules from ``sys.modules``, so that the next import reads them from disk again
    (the Slicer module's Reload: Slicer re-executes only the module file). Returns the names dropped."""
    import sys

    names = [name for name in sys.modules if name == __name__ or name.startswith(__name__ + ".")]
    for name in names:
        del sys.modules[name]
    return names
