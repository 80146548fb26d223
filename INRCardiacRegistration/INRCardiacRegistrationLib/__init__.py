"""INRCardiacRegistrationLib: left-ventricle myocardium tracking through a cardiac cycle by deformable
registration with implicit neural representations (SIREN) guided by the myocardium's signed distance field.

Importable without 3D Slicer or Qt. Physical coordinates are LPS millimetres unless a name says otherwise.
"""

__version__ = "0.1.0"
