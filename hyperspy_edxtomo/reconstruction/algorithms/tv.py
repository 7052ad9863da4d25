"""TV: 3D isotropic total variation with non-negativity (Chambolle-Pock)."""

from traits.api import Bool, Range

from hyperspy_edxtomo.base.errors import InputError
from hyperspy_edxtomo.plugins.contract import (
    ReconstructionAlgorithm,
    ReconstructionResult,
)
from hyperspy_edxtomo.plugins.hookspecs import hookimpl
from hyperspy_edxtomo.reconstruction import solvers
from hyperspy_edxtomo.reconstruction.joint_series import reconstruct_jointly
from hyperspy_edxtomo.reconstruction.regularised import (
    AutoStrength,
    data_term_trait,
    field_margin_trait,
    max_iterations_trait,
    strength_trait,
)


class TV(AutoStrength, ReconstructionAlgorithm):
    """min_{x>=0} D(Ax + b, y) + lam TV(x), D the Poisson likelihood (counts) or least squares."""

    name = "tv"
    summary = "3D total-variation regularised reconstruction, non-negative (Chambolle-Pock)"
    lam = strength_trait("total-variation")
    iterations = Range(1, 100_000, 200, desc="Chambolle-Pock iterations (more where unconverged: max_iterations)")
    max_iterations = max_iterations_trait()
    data_term = data_term_trait()
    field_margin = field_margin_trait()
    couple_elements = Bool(False, desc="True: reconstruct all elements together with a multi-channel TV (edges "
                                       "shared across elements; strength chosen on all elements' held-out counts; "
                                       "data_term 'auto' is then the Poisson likelihood for counts, least squares "
                                       "for other maps)")
    # 3D TV couples neighbouring slices: batches overlap by this many slices
    slice_halo = solvers.TV_HALO
    quick_parameters = {"iterations": 100}

    def reconstruct_series(self, counts, context):
        if not self.couple_elements:
            return super().reconstruct_series(counts, context)
        if self.field_margin not in ("auto", 0):
            raise InputError(f"tv: field_margin={self.field_margin!r} is not available with couple_elements=True "
                             "(the coupled solver reconstructs the field of view only): leave it 'auto' or 0.")
        volumes, chosen = reconstruct_jointly(counts, context, lam=self.lam, iterations=self.iterations,
                                              data_term=self.data_term, name="tv (coupled)",
                                              max_iterations=self.max_iterations)
        self.chosen = {**chosen, "field_margin": 0}
        return ReconstructionResult(volumes, [self.parameter_values()] * len(context.elements))

    def _solve(self, projector, y, lam, iterations, data_term, background=None, return_info=False, start="auto",
               max_iterations=None, extend_to=None):
        return solvers.tv(projector, y, lam, iterations, data_term=data_term, background=background,
                          return_info=return_info, start=start, max_iterations=max_iterations, extend_to=extend_to)


@hookimpl
def edxtomo_reconstruction_algorithms():
    return [TV]
