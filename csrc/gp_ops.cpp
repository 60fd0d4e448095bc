// Torch binding of the gradient-penalty kernels: operator schemas (TORCH_LIBRARY),
// input checks, memory layout, and dispatch to the CPU kernels (gp_cpu.cpp) and, when
// built with CUDA (GANTK_WITH_CUDA), to the CUDA launchers (gp_cuda.h).
//
// Autograd kernels are C++ too (below: no Python runs per call on the training path);
// fake (meta) kernels for torch.compile are registered from Python (gantk/ops/_ext.py).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <cmath>
#include <optional>

#include "gp_cpu.h"

#ifdef GANTK_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "gp_cuda.h"
#endif

namespace gantk {
namespace {

constexpr const char* kInterp = "gantk::interpolate";
constexpr const char* kFwd = "gantk::norm_penalty";
constexpr const char* kBwd = "gantk::norm_penalty_backward";

bool is_data_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

// float64 data accumulates (and reports) in float64, everything else in float32.
at::ScalarType acc_dtype(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

void check_data(const at::Tensor& t, const char* op, const char* arg) {
  TORCH_CHECK(t.defined(), op, ": ", arg, " is an undefined tensor");
  TORCH_CHECK(is_data_dtype(t.scalar_type()), op, ": ", arg,
              " must be float64, float32, bfloat16 or float16, got ", t.scalar_type());
  TORCH_CHECK(t.dim() >= 1, op, ": ", arg, " needs a batch dimension, got a 0-dim tensor");
  TORCH_CHECK(t.layout() == at::kStrided, op, ": ", arg, " must be a dense (strided) tensor");
}

void check_same_device(const at::Tensor& t, const at::Tensor& ref, const char* op, const char* arg,
                       const char* ref_arg) {
  TORCH_CHECK(t.device() == ref.device(), op, ": ", arg, " must be on ", ref_arg, "'s device ",
              ref.device(), ", got ", t.device());
}

// A one-element floating tensor (grad_penalty, inv_scale), moved to `like`'s device in
// the accumulation dtype (no host synchronisation: a device copy at most).
at::Tensor scalar_arg(const at::Tensor& t, const at::Tensor& like, const char* op, const char* arg) {
  TORCH_CHECK(t.defined(), op, ": ", arg, " is an undefined tensor");
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), op, ": ", arg, " must be floating point, got ",
              t.scalar_type());
  TORCH_CHECK(t.numel() == 1, op, ": ", arg, " must hold exactly one element, got shape ", t.sizes());
  return t.reshape({1}).to(like.device(), acc_dtype(like.scalar_type())).contiguous();
}

// How a tensor's memory is laid out, when every sample is one dense block of
// elements [i*n, (i+1)*n): 0 contiguous, 1 channels_last, 2 channels_last_3d; -1 other.
// gantk/ops/_ext.py mirrors this rule in the fake kernels: keep the two in step.
int batch_major_layout(const at::Tensor& t) {
  if (t.is_contiguous()) return 0;
  if (t.dim() == 4 && t.is_contiguous(at::MemoryFormat::ChannelsLast)) return 1;
  if (t.dim() == 5 && t.is_contiguous(at::MemoryFormat::ChannelsLast3d)) return 2;
  return -1;
}

// ---------------------------------------------------------------- interpolate
struct InterpArgs {
  at::Tensor real, fake, eps, out;
  int64_t b = 0, n = 0;
};

InterpArgs prepare_interpolate(const at::Tensor& real, const at::Tensor& fake, const at::Tensor& eps) {
  check_data(real, kInterp, "real");
  check_data(fake, kInterp, "fake");
  TORCH_CHECK(fake.sizes() == real.sizes(), kInterp, ": fake must have real's shape ", real.sizes(),
              ", got ", fake.sizes());
  TORCH_CHECK(fake.scalar_type() == real.scalar_type(), kInterp, ": fake must have real's dtype ",
              real.scalar_type(), ", got ", fake.scalar_type());
  check_same_device(fake, real, kInterp, "fake", "real");
  TORCH_CHECK(eps.defined(), kInterp, ": eps is an undefined tensor");
  TORCH_CHECK(at::isFloatingType(eps.scalar_type()), kInterp, ": eps must be floating point, got ",
              eps.scalar_type());
  check_same_device(eps, real, kInterp, "eps", "real");
  InterpArgs a;
  a.b = real.size(0);
  TORCH_CHECK(eps.dim() == 1 && eps.size(0) == a.b, kInterp, ": eps must have shape (", a.b,
              ",), one value per sample, got ", eps.sizes());
  a.n = a.b > 0 ? real.numel() / a.b : 0;
  a.eps = eps.to(acc_dtype(real.scalar_type())).contiguous();
  const int layout = batch_major_layout(real);
  if (layout >= 0 && layout == batch_major_layout(fake)) {
    // Both already one dense block in the same order: keep that layout (channels_last
    // in, channels_last out) and read them in place.
    a.real = real;
    a.fake = fake;
    a.out = at::empty_like(real);
  } else {
    a.real = real.contiguous();
    a.fake = fake.contiguous();
    a.out = at::empty(real.sizes(), real.options());
  }
  return a;
}

at::Tensor interpolate_cpu(const at::Tensor& real, const at::Tensor& fake, const at::Tensor& eps) {
  InterpArgs a = prepare_interpolate(real, fake, eps);
  cpu::interpolate(a.real, a.fake, a.eps, a.out, a.b, a.n);
  return a.out;
}

// ---------------------------------------------------------------- norm penalty
struct PenaltyArgs {
  at::Tensor g, inv_scale;  // inv_scale undefined for scale 1
  int64_t b = 0, n = 0;
};

PenaltyArgs prepare_penalty(const char* op, const at::Tensor& g, double weight, double norm_eps,
                            const std::optional<at::Tensor>& inv_scale) {
  check_data(g, op, "g");
  PenaltyArgs a;
  a.b = g.size(0);
  TORCH_CHECK(a.b > 0, op, ": g needs a non-empty batch dimension, got shape ", g.sizes());
  a.n = g.numel() / a.b;
  TORCH_CHECK(std::isfinite(weight), op, ": weight must be finite, got ", weight);
  TORCH_CHECK(norm_eps >= 0.0 && std::isfinite(norm_eps), op, ": norm_eps must be finite and >= 0, got ",
              norm_eps);
  a.g = batch_major_layout(g) >= 0 ? g : g.contiguous();
  if (inv_scale.has_value() && inv_scale->defined()) a.inv_scale = scalar_arg(*inv_scale, g, op, "inv_scale");
  return a;
}

std::tuple<at::Tensor, at::Tensor> make_penalty_outputs(const PenaltyArgs& a) {
  const auto opts = a.g.options().dtype(acc_dtype(a.g.scalar_type()));
  return {at::empty({}, opts), at::empty({a.b}, opts)};
}

std::tuple<at::Tensor, at::Tensor> norm_penalty_cpu(const at::Tensor& g, double target, bool one_sided,
                                                    double weight, double norm_eps,
                                                    const std::optional<at::Tensor>& inv_scale) {
  PenaltyArgs a = prepare_penalty(kFwd, g, weight, norm_eps, inv_scale);
  auto [penalty, norms] = make_penalty_outputs(a);
  cpu::norm_penalty(a.g, a.b, a.n, target, one_sided, weight, norm_eps, a.inv_scale, penalty, norms);
  return {penalty, norms};
}

struct BackwardArgs {
  PenaltyArgs p;
  at::Tensor grad_penalty, norms, dg;
};

BackwardArgs prepare_backward(const at::Tensor& grad_penalty, const at::Tensor& g, const at::Tensor& norms,
                              double weight, const std::optional<at::Tensor>& inv_scale) {
  BackwardArgs a;
  a.p = prepare_penalty(kBwd, g, weight, 0.0, inv_scale);
  a.grad_penalty = scalar_arg(grad_penalty, g, kBwd, "grad_penalty");
  TORCH_CHECK(norms.defined(), kBwd, ": norms is an undefined tensor");
  TORCH_CHECK(at::isFloatingType(norms.scalar_type()), kBwd, ": norms must be floating point, got ",
              norms.scalar_type());
  check_same_device(norms, g, kBwd, "norms", "g");
  TORCH_CHECK(norms.dim() == 1 && norms.size(0) == a.p.b, kBwd, ": norms must have shape (", a.p.b,
              ",), got ", norms.sizes());
  a.norms = norms.to(acc_dtype(g.scalar_type())).contiguous();
  // g kept in place (contiguous or channels_last): dg gets g's layout; otherwise both
  // contiguous.
  a.dg = a.p.g.is_same(g) ? at::empty_like(g) : at::empty(g.sizes(), g.options());
  return a;
}

at::Tensor norm_penalty_backward_cpu(const at::Tensor& grad_penalty, const at::Tensor& g,
                                     const at::Tensor& norms, double target, bool one_sided, double weight,
                                     const std::optional<at::Tensor>& inv_scale) {
  BackwardArgs a = prepare_backward(grad_penalty, g, norms, weight, inv_scale);
  cpu::norm_penalty_backward(a.grad_penalty, a.p.g, a.norms, a.p.b, a.p.n, target, one_sided, weight,
                             a.p.inv_scale, a.dg);
  return a.dg;
}

// ---------------------------------------------------------------- CUDA
#ifdef GANTK_WITH_CUDA
int dtype_code(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return kGantkF32;
    case at::kDouble: return kGantkF64;
    case at::kHalf: return kGantkF16;
    case at::kBFloat16: return kGantkBF16;
    default: TORCH_CHECK(false, "gantk: unsupported dtype ", t);
  }
}

void check_launch(const char* err, const char* op) {
  TORCH_CHECK(err == nullptr, op, ": CUDA kernel failed: ", err ? err : "");
}

const void* ptr_or_null(const at::Tensor& t) { return t.defined() ? t.const_data_ptr() : nullptr; }

at::Tensor interpolate_cuda(const at::Tensor& real, const at::Tensor& fake, const at::Tensor& eps) {
  const c10::cuda::CUDAGuard guard(real.device());
  InterpArgs a = prepare_interpolate(real, fake, eps);
  check_launch(gantk_interpolate_cuda(dtype_code(real.scalar_type()), a.real.const_data_ptr(),
                                      a.fake.const_data_ptr(), a.eps.const_data_ptr(),
                                      a.out.mutable_data_ptr(), a.b, a.n,
                                      at::cuda::getCurrentCUDAStream().stream()),
               kInterp);
  return a.out;
}

std::tuple<at::Tensor, at::Tensor> norm_penalty_cuda(const at::Tensor& g, double target, bool one_sided,
                                                     double weight, double norm_eps,
                                                     const std::optional<at::Tensor>& inv_scale) {
  const c10::cuda::CUDAGuard guard(g.device());
  PenaltyArgs a = prepare_penalty(kFwd, g, weight, norm_eps, inv_scale);
  auto [penalty, norms] = make_penalty_outputs(a);
  const int code = dtype_code(g.scalar_type());
  int64_t chunks = 0, ws_len = 0;
  check_launch(gantk_norm_penalty_plan_cuda(code, a.b, a.n, g.get_device(), &chunks, &ws_len), kFwd);
  at::Tensor ws = at::empty({ws_len}, penalty.options());
  check_launch(gantk_norm_penalty_cuda(code, a.g.const_data_ptr(), a.b, a.n, target, one_sided, weight,
                                       norm_eps, ptr_or_null(a.inv_scale), penalty.mutable_data_ptr(),
                                       norms.mutable_data_ptr(), chunks, ws.mutable_data_ptr(), ws_len,
                                       at::cuda::getCurrentCUDAStream().stream()),
               kFwd);
  return {penalty, norms};
}

at::Tensor norm_penalty_backward_cuda(const at::Tensor& grad_penalty, const at::Tensor& g,
                                      const at::Tensor& norms, double target, bool one_sided, double weight,
                                      const std::optional<at::Tensor>& inv_scale) {
  const c10::cuda::CUDAGuard guard(g.device());
  BackwardArgs a = prepare_backward(grad_penalty, g, norms, weight, inv_scale);
  check_launch(gantk_norm_penalty_backward_cuda(dtype_code(g.scalar_type()), a.grad_penalty.const_data_ptr(),
                                                a.p.g.const_data_ptr(), a.norms.const_data_ptr(), a.p.b, a.p.n,
                                                target, one_sided, weight, ptr_or_null(a.p.inv_scale),
                                                a.dg.mutable_data_ptr(),
                                                at::cuda::getCurrentCUDAStream().stream()),
               kBwd);
  return a.dg;
}
#endif  // GANTK_WITH_CUDA

// ---------------------------------------------------------------- autograd
// One C++ autograd node per op, registered for the Autograd key: the forward
// redispatches to the CPU/CUDA kernel, the backward calls the fused backward kernel.
// (Python-registered autograd formulas cost ~0.2-0.3 ms of host time per call, more
// than the kernels themselves below a few MB and on every GPU size.)
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using InterpSig = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&);
using PenaltySig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, double, bool, double, double,
                                                      const std::optional<at::Tensor>&);
using PenaltyBwdSig = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, double, bool, double,
                                 const std::optional<at::Tensor>&);

const c10::TypedOperatorHandle<InterpSig>& interp_op() {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow(kInterp, "").typed<InterpSig>();
  return op;
}
const c10::TypedOperatorHandle<PenaltySig>& penalty_op() {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow(kFwd, "").typed<PenaltySig>();
  return op;
}
const c10::TypedOperatorHandle<PenaltyBwdSig>& penalty_bwd_op() {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow(kBwd, "").typed<PenaltyBwdSig>();
  return op;
}

class InterpolateFn : public torch::autograd::Function<InterpolateFn> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& real, const at::Tensor& fake,
                            const at::Tensor& eps) {
    at::AutoDispatchBelowADInplaceOrView below;
    at::Tensor out = interp_op().call(real, fake, eps);
    const bool need_eps = eps.requires_grad();  // (needs_input_grad is for backward only)
    ctx->save_for_backward({eps, need_eps ? real : at::Tensor(), need_eps ? fake : at::Tensor()});
    return out;
  }

  // x̂ = ε·real + (1 − ε)·fake per sample: ∂/∂real = grad·ε, ∂/∂fake = grad·(1 − ε),
  // ∂/∂ε_i = Σ grad_i·(real_i − fake_i) (accumulated in float32, float64 for float64).
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& eps = saved[0];
    const at::Tensor& grad = grads[0];
    if (!grad.defined()) return {at::Tensor(), at::Tensor(), at::Tensor()};
    const int64_t b = grad.size(0);
    std::vector<int64_t> shape(grad.dim(), 1);
    shape[0] = b;
    const at::Tensor w = eps.to(grad.scalar_type()).view(shape);
    at::Tensor d_real, d_fake, d_eps;
    if (ctx->needs_input_grad(0)) d_real = grad * w;
    if (ctx->needs_input_grad(1)) d_fake = grad * (1 - w);
    if (ctx->needs_input_grad(2)) {
      const auto acc = acc_dtype(grad.scalar_type());
      d_eps = (grad.to(acc) * (saved[1].to(acc) - saved[2].to(acc))).reshape({b, -1}).sum(1).to(eps.scalar_type());
    }
    return {d_real, d_fake, d_eps};
  }
};

class NormPenaltyFn : public torch::autograd::Function<NormPenaltyFn> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& g, double target, bool one_sided,
                               double weight, double norm_eps, const std::optional<at::Tensor>& inv_scale) {
    at::AutoDispatchBelowADInplaceOrView below;
    auto [penalty, norms] = penalty_op().call(g, target, one_sided, weight, norm_eps, inv_scale);
    const bool scaled = inv_scale.has_value() && inv_scale->defined();
    ctx->save_for_backward({g, norms, scaled ? *inv_scale : at::Tensor()});
    ctx->saved_data["target"] = target;
    ctx->saved_data["one_sided"] = one_sided;
    ctx->saved_data["weight"] = weight;
    ctx->mark_non_differentiable({norms});  // the norms are for logging
    return {penalty, norms};
  }

  // Not differentiable again: the training step needs ∂penalty/∂θ, which autograd gets
  // by chaining ∂penalty/∂g into g's own create_graph'd graph.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& grad_penalty = grads[0];
    at::Tensor dg;
    if (grad_penalty.defined() && ctx->needs_input_grad(0)) {
      std::optional<at::Tensor> inv_scale;
      if (saved[2].defined()) inv_scale = saved[2];
      dg = penalty_bwd_op().call(grad_penalty, saved[0], saved[1], ctx->saved_data["target"].toDouble(),
                                 ctx->saved_data["one_sided"].toBool(), ctx->saved_data["weight"].toDouble(),
                                 inv_scale);
    }
    return {dg, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor interpolate_autograd(const at::Tensor& real, const at::Tensor& fake, const at::Tensor& eps) {
  return InterpolateFn::apply(real, fake, eps);
}

std::tuple<at::Tensor, at::Tensor> norm_penalty_autograd(const at::Tensor& g, double target, bool one_sided,
                                                         double weight, double norm_eps,
                                                         const std::optional<at::Tensor>& inv_scale) {
  auto out = NormPenaltyFn::apply(g, target, one_sided, weight, norm_eps, inv_scale);
  return {out[0], out[1]};
}

}  // namespace
}  // namespace gantk

TORCH_LIBRARY(gantk, m) {
  m.def("interpolate(Tensor real, Tensor fake, Tensor eps) -> Tensor");
  m.def(
      "norm_penalty(Tensor g, float target, bool one_sided, float weight, float norm_eps, "
      "Tensor? inv_scale) -> (Tensor, Tensor)");
  m.def(
      "norm_penalty_backward(Tensor grad_penalty, Tensor g, Tensor norms, float target, "
      "bool one_sided, float weight, Tensor? inv_scale) -> Tensor");
  // build check: threads the CPU kernels' parallel loops actually use (see gp_cpu.h)
  m.def("_cpu_threads_used(int tasks) -> int", &gantk::cpu::threads_used);
  m.def("_cpu_set_isa(int level) -> int", &gantk::cpu::set_isa);
}

TORCH_LIBRARY_IMPL(gantk, CPU, m) {
  m.impl("interpolate", &gantk::interpolate_cpu);
  m.impl("norm_penalty", &gantk::norm_penalty_cpu);
  m.impl("norm_penalty_backward", &gantk::norm_penalty_backward_cpu);
}

TORCH_LIBRARY_IMPL(gantk, Autograd, m) {
  m.impl("interpolate", &gantk::interpolate_autograd);
  m.impl("norm_penalty", &gantk::norm_penalty_autograd);
}

#ifdef GANTK_WITH_CUDA
TORCH_LIBRARY_IMPL(gantk, CUDA, m) {
  m.impl("interpolate", &gantk::interpolate_cuda);
  m.impl("norm_penalty", &gantk::norm_penalty_cuda);
  m.impl("norm_penalty_backward", &gantk::norm_penalty_backward_cuda);
}
#endif
