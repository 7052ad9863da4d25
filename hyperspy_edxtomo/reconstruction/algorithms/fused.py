"""fused: X-ray counts and the HAADF tilt series in one reconstruction, elements coupled.

After Schwartz et al., "Imaging 3D chemistry at 1 nm resolution with fused
multi-modal electron tomography" (Nat. Commun. 2024), without hand-set
weights: the HAADF contrast of every element and the HAADF offsets are
fitted, and the HAADF weight and the TV strength are chosen on held-out
X-ray counts (0 weight included: no gain, no HAADF); the counts keep their
Poisson likelihood and their scale. Beyond it, the HAADF volume's edges
guide the elements' TV (directional TV), with a strength chosen the same way.
"""

from traits.api import Enum, Range

from hyperspy_edxtomo.plugins.contract import ReconstructionAlgorithm
from hyperspy_edxtomo.plugins.hookspecs import hookimpl
from hyperspy_edxtomo.reconstruction.joint_series import (
    JointReconstruction,
    guide_trait,
    weight_trait,
)
from hyperspy_edxtomo.reconstruction.regularised import max_iterations_trait, strength_trait


class Fused(JointReconstruction, ReconstructionAlgorithm):
    """min_{x>=0} sum_e Poisson(A x_e + b_e; y_e) + w/2 ||(A sum_e c_e x_e + o - h) / sigma_h||^2
    + lam dTV_coupled(x), the directional TV sparing edges along the HAADF volume's."""

    name = "fused"
    summary = ("X-ray counts (Poisson) + HAADF (fitted contrast per element, edges guiding a coupled TV); "
               "weights chosen on held-out counts")
    lam = strength_trait("coupled total-variation")
    haadf_weight = weight_trait()
    guide_strength = guide_trait()
    iterations = Range(1, 100_000, 200, desc="Chambolle-Pock iterations (more where unconverged: max_iterations)")
    max_iterations = max_iterations_trait()
    data_term = Enum("auto", "poisson", "least_squares",
                     desc="'auto': the Poisson likelihood for counts (also counts times a scale), least squares "
                          "(weighted per element by its magnitude) for other maps")
    uses_haadf = True
    quick_parameters = {"iterations": 100}

    def joint_options(self):
        return {"use_haadf": True, "haadf_weight": self.haadf_weight, "guide_strength": self.guide_strength}


@hookimpl
def edxtomo_reconstruction_algorithms():
    return [Fused]
