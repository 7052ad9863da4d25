"""The halo of slices a batch borrows from its neighbours, validated on the user's data.

A 3D regulariser couples neighbouring slices, so a batch solved alone differs
from the whole volume near its edges unless it borrows enough slices on each
side; how many depends on the strength (a strong TV couples slices far apart).
:func:`validate_halo` measures it on the brightest slices, for the per-element
solvers (:mod:`~hyperspy_edxtomo.reconstruction.regularised`) and the coupled
ones (:mod:`~hyperspy_edxtomo.reconstruction.joint_series`) alike.
"""

from hyperspy_edxtomo.base.errors import warn

__all__ = ["HALO_TOL", "HALO_SLAB", "validate_halo"]

#: a batch's edge slice may differ from the solution without batches by this fraction of its maximum
HALO_TOL = 0.02
#: brightest slices the batches' halo is validated on
HALO_SLAB = 64


def validate_halo(solve, n, halo, batch, name, lam, max_halo=None, tol=HALO_TOL):
    """The halo each batch of ``batch`` slices should borrow, and its record.

    The ``n`` slices are solved whole (``solve(slice(0, n))``), then cut
    ``halo`` slices beyond the slice a quarter in (``solve(slice(0, j + halo +
    1))``); that slice must match within ``tol`` of the maximum (of each
    element's maximum, for solutions with leading element axes). The halo
    doubles until it does. Where no halo up to ``max_halo`` that the ``n``
    slices can show does, the batches borrow ``max_halo`` slices (the most
    they can), and a warning says seams may remain.

    Parameters
    ----------
    solve : callable
        ``solve(slices)`` -> torch tensor ``(..., voxels, slices)``: the problem restricted to the slices
        ``slices`` (a ``slice`` of ``0 .. n``), solved as every batch will be (same start, iterations).
    n : int
        Slices ``solve`` can take.
    halo : int
        The first halo tried (the algorithm's default).
    batch : int
        Slices per batch.
    name : str
        The algorithm, for the warning.
    lam : float
        The strength, for the warning.
    max_halo : int, optional
        The widest halo a batch may borrow (default ``batch``: dask's ``map_overlap`` borrows at most a
        chunk).
    tol : float

    Returns
    -------
    halo : int
    record : dict
        ``halo``, ``validated``, ``tolerance``, ``tried`` (each halo with its
        edge difference), and ``reason`` where not validated.
    """
    full = solve(slice(0, n))
    j = n // 4
    flat = full.reshape(-1, *full.shape[-2:])  # (elements, voxels, slices)
    scales = flat.abs().amax(dim=(1, 2)).clamp_min(1e-30)
    tried = []
    record = {"tolerance": tol, "tried": tried}
    max_halo = int(batch if max_halo is None else max_halo)
    while j + halo + 1 < n and halo <= max_halo:
        cut = solve(slice(0, j + halo + 1)).reshape(flat.shape[0], flat.shape[1], -1)
        tried.append({"halo": int(halo),
                      "difference": float(((cut[..., j] - flat[..., j]).abs().amax(dim=1) / scales).max())})
        if tried[-1]["difference"] <= tol:
            return int(halo), {"halo": int(halo), "validated": True, **record}
        halo *= 2
    why = (f"a batch edge still differs by {100 * tried[-1]['difference']:.0f} % of the maximum with a halo of "
           f"{tried[-1]['halo']} slices" if tried else f"{n} slices are too few to check" if halo <= max_halo
           else f"a batch of {batch} slices cannot borrow {halo}")
    warn(f"{name}: at lam={lam:.4g} the batches of {batch} slices may show seams ({why}); each borrows {max_halo} "
         f"slices on each side ({batch + 2 * max_halo} slices in memory at once). One batch (batch_size= the number "
         "of slices) has none.")
    return max_halo, {"halo": max_halo, "validated": False, **record, "reason": why}
