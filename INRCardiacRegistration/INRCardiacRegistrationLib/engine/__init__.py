"""Layer 2, the torch engine: one pairwise registration. The configuration (:mod:`.config`, importable without
torch), the SIREN, its analytic Jacobian, the losses, point sampling, interpolation, the pair optimiser and its
result (maps points, warps images, exports fields)."""
