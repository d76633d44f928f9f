//! The fused penalty evaluation and step, written once for a team of threads: member t owns
//! W1's columns [c_t, c_t+1) and the same rows of W2 and w, the members meet at two barriers
//! (four with an inner step) and sum each other's partials in member order, so the bits
//! depend on the number of parts, not on timing. Per call: one product W1·[W2, w] and one
//! W1ᵀ product (2 m h n flops each), one pass over X_trn on 2n columns and one over X_val on
//! n, and the rank-2n product of ∇W1. Also the scratch space every evaluation reuses.

use super::RepLearning;
use crate::kernels::{Part, cols_axpy};
use crate::team;
use faer::linalg::matmul::matmul;
use faer::reborrow::{Reborrow, ReborrowMut};
use faer::{Accum, Mat, MatMut, MatRef, Par};
use std::sync::{Mutex, RwLock};

/// A block of a variable one team member reads, or reads and then steps.
enum Block<'a> {
    Ref(MatRef<'a, f64>),
    Mut(MatMut<'a, f64>),
}

impl<'a> Block<'a> {
    fn get(&self) -> MatRef<'_, f64> {
        match self {
            Block::Ref(b) => *b,
            Block::Mut(b) => b.rb(),
        }
    }

    /// An output block (outputs are always split from `Var::Mut`).
    fn into_mut(b: Option<Self>) -> Option<MatMut<'a, f64>> {
        match b {
            Some(Block::Mut(x)) => Some(x),
            _ => None,
        }
    }
}

/// dst = lhs · rhs on the calling thread.
fn mul(dst: MatMut<'_, f64>, lhs: MatRef<'_, f64>, rhs: MatRef<'_, f64>) {
    matmul(dst, Accum::Replace, lhs, rhs, 1.0, Par::Seq);
}

/// Team member t's blocks of the variables and outputs of one fused evaluation: W1's columns
/// [c_t, c_t+1) (m × h_t), and the same rows of W2, w and of the v-gradients (h_t × n).
struct Slot<'a> {
    w1: Block<'a>,
    w2: Block<'a>,
    w: Block<'a>,
    du: Option<MatMut<'a, f64>>,
    dv: Option<MatMut<'a, f64>>,
    gw: Option<MatMut<'a, f64>>,
}

/// What one fused evaluation does with its results ([`RepLearning::fused`]).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Task {
    /// Form ∇_u L_γ: written to `du`, or (with `alpha_u`) added into W1 as W1 −= α_u ∇_u L_γ.
    pub(super) du: bool,
    pub(super) alpha_u: Option<f64>,
    /// Form ∇_v L_γ: written to `dv`, or (with `alpha_v`) W2 −= α_v ∇_v L_γ.
    pub(super) dv: bool,
    pub(super) alpha_v: Option<f64>,
    /// ∇_v g(u, w) at the incoming w, written to `gw`.
    pub(super) gw: bool,
    /// First w ← w − β ∇_v g(u, w) (written back to w); g* and ∇g* at the new w.
    pub(super) beta: Option<f64>,
    /// Team members to ask for (None: by the size of the job, `team::parts_for`).
    pub(super) parts: Option<usize>,
}

/// One team member's scratch space of a fused evaluation. The member writes each published
/// buffer in one phase and the others read it, after a barrier, in the next.
#[derive(Debug)]
struct Member {
    own: Mutex<Own>,
    common: Mutex<Common>,
    /// Published after phase 1: W1_t [W2, w]_t, this member's partial of W1 [W2, w] (m × 2n).
    zp: RwLock<Mat<f64>>,
    /// Published after phase 2: the partial passes over X_trn and X_val.
    pass_t: RwLock<Part>,
    pass_v: RwLock<Part>,
    /// Published after phase 3: W1_t ∇_v g(u, w)_t (m × n).
    e: RwLock<Mat<f64>>,
    /// Published after phase 4: the partial pass over X_trn at w'.
    pass_w: RwLock<Part>,
}

/// A member's private buffers of its own block.
#[derive(Debug)]
struct Own {
    /// Its rows of [W2, w] (then [W2, w']), h_t × 2n (allocated h × 2n).
    vw: Mat<f64>,
    /// Its rows of [∇_v L_γ, ∇_v g(u, w)], h_t × 2n (allocated h × 2n).
    d: Mat<f64>,
}

/// What every part needs whole, the same bits on every member that forms it.
#[derive(Debug)]
struct Common {
    /// W1 [W2, w] (then [W1 W2, W1 w']), summed from the partials, m × 2n.
    z: Mat<f64>,
    /// X_trnᵀ R_trn for both right-hand sides, m × 2n.
    gt: Mat<f64>,
    /// [∇_Z f + γ ∇_Z g(u, v), −γ ∇_Z g(u, w')] (so ∇W1 = gc [W2, w']ᵀ), m × 2n.
    gc: Mat<f64>,
    /// [∇_Z f + γ ∇_Z g(u, v), ∇_Z g(u, w)] for the v-gradients' W1ᵀ product, m × 2n.
    gd: Mat<f64>,
    /// [f(u, v), g(u, v), g(u, w')].
    values: [f64; 3],
}

impl Member {
    fn new(rows: usize, m: usize, h: usize, n: usize) -> Self {
        let mat = |r, c| Mat::zeros(r, c);
        Member {
            own: Mutex::new(Own {
                vw: mat(h, 2 * n),
                d: mat(h, 2 * n),
            }),
            common: Mutex::new(Common {
                z: mat(m, 2 * n),
                gt: mat(m, 2 * n),
                gc: mat(m, 2 * n),
                gd: mat(m, 2 * n),
                values: [0.0; 3],
            }),
            zp: RwLock::new(mat(m, 2 * n)),
            pass_t: RwLock::new(Part::new(rows, m, 2 * n)),
            pass_v: RwLock::new(Part::new(rows, m, n)),
            e: RwLock::new(mat(m, n)),
            pass_w: RwLock::new(Part::new(rows, m, n)),
        }
    }
}

/// Locks that a panicking member left poisoned still guard consistent buffers (every phase
/// overwrites what it publishes), and the team reports the panic itself.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}
fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

/// A buffer one member publishes for the others to sum.
trait Partial {
    fn partial(&self, k: usize) -> MatRef<'_, f64>;
    fn sums(&self) -> [f64; 2] {
        [0.0; 2]
    }
}

impl Partial for Mat<f64> {
    fn partial(&self, k: usize) -> MatRef<'_, f64> {
        self.as_ref().subcols(0, k)
    }
}

impl Partial for Part {
    fn partial(&self, k: usize) -> MatRef<'_, f64> {
        self.g(k)
    }
    fn sums(&self) -> [f64; 2] {
        Part::sums(self)
    }
}

/// dst = Σ_s (first k columns of member s's buffer), over the members in order: the same sum,
/// bit for bit, on every member. Returns the members' raw sums of squares, summed alike.
fn sum_parts<T: Partial>(
    members: &[Member],
    which: impl Fn(&Member) -> &RwLock<T>,
    k: usize,
    mut dst: MatMut<'_, f64>,
) -> [f64; 2] {
    let mut sums = [0.0; 2];
    for (s, member) in members.iter().enumerate() {
        let buf = read(which(member));
        if k > 0 {
            cols_axpy(1.0, buf.partial(k), dst.rb_mut(), s == 0);
        }
        let [a, b] = buf.sums();
        sums = [sums[0] + a, sums[1] + b];
    }
    sums
}

/// A variable as the caller hands it: read only, or to be stepped in place.
pub(super) enum Var<'a> {
    Ref(&'a [f64]),
    Mut(&'a mut [f64]),
}

/// A variable that a step moves (`Var::Mut`) or only reads.
pub(super) fn var(x: &mut [f64], moved: bool) -> Var<'_> {
    if moved { Var::Mut(x) } else { Var::Ref(x) }
}

/// Splits an r × c column-major variable into the members' blocks: column blocks
/// [cut(t), cut(t + 1)) when `by_cols`, else row blocks; `put(t, block)` receives them.
fn split_blocks<'a>(
    var: Var<'a>,
    (r, c): (usize, usize),
    by_cols: bool,
    parts: usize,
    cut: impl Fn(usize) -> usize,
    mut put: impl FnMut(usize, Block<'a>),
) {
    match var {
        Var::Ref(x) => {
            let x = MatRef::from_column_major_slice(x, r, c);
            for t in 0..parts {
                let (lo, len) = (cut(t), cut(t + 1) - cut(t));
                let b = if by_cols {
                    x.subcols(lo, len)
                } else {
                    x.subrows(lo, len)
                };
                put(t, Block::Ref(b));
            }
        }
        Var::Mut(x) => {
            let mut rest = MatMut::from_column_major_slice_mut(x, r, c);
            for t in 0..parts {
                let len = cut(t + 1) - cut(t);
                let (head, tail) = if by_cols {
                    rest.split_at_col_mut(len)
                } else {
                    rest.split_at_row_mut(len)
                };
                put(t, Block::Mut(head));
                rest = tail;
            }
        }
    }
}

/// Scratch space of one caller (sizes fixed by the problem's shape).
#[derive(Debug)]
pub(super) struct Work {
    /// W1 W2 of a single loss, m × n.
    pub(super) z: Mat<f64>,
    /// Its Xᵀ R, m × n.
    pub(super) gt: Mat<f64>,
    pub(super) parts: Vec<Part>,
    /// The other threads' partials of W1·(·) (see `kernels::matmul_par_inner`).
    pub(super) partials: Vec<Mat<f64>>,
    /// The team members' buffers of the fused evaluations (made on first use).
    members: Vec<Member>,
    /// Team or alone, where either may be faster.
    chooser: team::Chooser,
}

impl Work {
    fn new(nt: usize, nv: usize, m: usize, n: usize) -> Self {
        Work {
            z: Mat::zeros(m, n),
            gt: Mat::zeros(m, n),
            parts: Part::pool(nt.max(nv), m, n),
            partials: Vec::new(),
            members: Vec::new(),
            chooser: team::Chooser::default(),
        }
    }
}

impl RepLearning {
    /// Runs `f` with a scratch workspace from the pool (allocated on first use).
    pub(super) fn with_work<R>(&self, f: impl FnOnce(&mut Work) -> R) -> R {
        let make = || {
            let (nt, nv) = (self.ls_trn.nrows(), self.ls_val.nrows());
            Work::new(nt, nv, self.m, self.n)
        };
        self.work.with(make, f)
    }

    /// Team member t's columns [c_t, c_t+1) of W1 (rows of W2 and w) among `parts`.
    fn member_cut(&self, t: usize, parts: usize) -> usize {
        self.h * t / parts
    }

    /// The fused evaluation at (W1, W2, w) behind [`Problem::penalty_eval`],
    /// [`Problem::penalty_eval_inner`] and [`Problem::penalty_step`]: one product W1·[W2, w],
    /// one pass over X_trn for both right-hand sides and one over X_val, one W1ᵀ product for
    /// both v-gradients, and the rank-2n product of ∇W1 = gc [W2, w]ᵀ, written to `du` or added
    /// into W1 by the product itself. With `task.beta`, w' = w − β ∇_v g(u, w) first: its
    /// gradient shares the W1ᵀ product with ∇_v L_γ, and g(u, w') takes one more product W1·(·)
    /// and pass over X_trn on n columns (Z for w' is Z for w minus β W1 ∇_v g).
    ///
    /// Written once for a team of threads (`crate::team`): member t owns W1's columns
    /// [c_t, c_t+1) and the same rows of W2 and w, so that it alone reads and writes its block
    /// of W1 in every product; the passes split X's rows; the members meet at two barriers
    /// (four with the inner step), where each sums the others' partials in member order (the
    /// result depends on the thread count, not on timing). Returns [f(u, v), g(u, v), g(u, w')].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn fused(
        &self,
        u: Var<'_>,
        v: Var<'_>,
        w: Var<'_>,
        gamma: f64,
        task: Task,
        du: Option<&mut [f64]>,
        dv: Option<&mut [f64]>,
        gw: Option<&mut [f64]>,
    ) -> [f64; 3] {
        let (m, h, n) = (self.m, self.h, self.n);
        let fmas = 2 * m * h * n;
        let wanted = task.parts.unwrap_or_else(|| team::parts_for(fmas));
        let parts = wanted.clamp(1, h.clamp(1, team::MAX_PARTS));
        self.with_work(|ws| {
            // Whether the team pays depends on the host's placement of the vCPUs and on other
            // load: measure (`team::Chooser`).
            let choose = parts > 1 && task.parts.is_none();
            let mut crew = team::team().crew(parts);
            if crew.parts() != parts || (choose && !ws.chooser.use_team()) {
                crew = crew.alone();
            }
            let timer = choose.then(std::time::Instant::now);
            let rows = self.ls_trn.nrows().max(self.ls_val.nrows());
            while ws.members.len() < parts {
                ws.members.push(Member::new(rows, m, h, n));
            }
            let members = &ws.members[..parts];
            let slots_in: [Mutex<Option<Slot<'_>>>; team::MAX_PARTS] =
                std::array::from_fn(|_| Mutex::new(None));
            let cut = |t| self.member_cut(t, parts);
            let mut blocks: [[Option<Block<'_>>; 6]; team::MAX_PARTS] = Default::default();
            let outs = [du.map(Var::Mut), dv.map(Var::Mut), gw.map(Var::Mut)];
            let vars = [Some(u), Some(v), Some(w)].into_iter().chain(outs);
            for (k, var) in vars.enumerate() {
                if let Some(var) = var {
                    let shape = if k % 3 == 0 { (m, h) } else { (h, n) };
                    split_blocks(var, shape, k % 3 == 0, parts, cut, |t, b| {
                        blocks[t][k] = Some(b)
                    });
                }
            }
            for (slot, b) in slots_in.iter().zip(blocks.iter_mut()).take(parts) {
                let out = Block::into_mut;
                let mut take = |k: usize| b[k].take();
                *lock(slot) = Some(Slot {
                    w1: take(0).expect("W1"),
                    w2: take(1).expect("W2"),
                    w: take(2).expect("w"),
                    du: out(take(3)),
                    dv: out(take(4)),
                    gw: out(take(5)),
                });
            }
            // The parts are fixed by the size and the configured thread count; when the team
            // is not free, this thread runs them all, phase by phase, with the same arithmetic
            // (the same bits whoever runs them).
            let threads = crew.parts();
            crew.run(&|i, barrier| {
                let mine = if threads == 1 { 0..parts } else { i..i + 1 };
                let mut slots: [Option<Slot<'_>>; team::MAX_PARTS] = Default::default();
                for t in mine.clone() {
                    slots[t] = lock(&slots_in[t]).take();
                }
                let lead = mine.start;
                for phase in 1.. {
                    let mut more = false;
                    let mut common = lock(&members[lead].common);
                    for t in mine.clone() {
                        let slot = slots[t].as_mut().expect("one slot per part");
                        let first = t == lead;
                        let (c, k) = (&mut *common, phase);
                        more = self.member_phase(k, t, members, slot, c, first, gamma, task);
                    }
                    drop(common);
                    if !more {
                        break;
                    }
                    barrier.wait();
                }
            });
            if let Some(t0) = timer {
                let nanos = t0.elapsed().as_nanos().min(u64::MAX as u128) as u64;
                ws.chooser.record(threads > 1, nanos);
            }
            let values: [f64; 3] = lock(&members[0].common).values;
            values
        })
    }

    /// Phase `phase` (1-based) of part t of [`RepLearning::fused`]; parts meet at a barrier
    /// between phases. `common` holds what every part needs whole (Z and the Z-gradients,
    /// summed from the parts' partials): a team member keeps its own copy and forms it
    /// (`lead`); a thread that runs several parts forms it once, with the first. Returns
    /// whether another phase follows.
    #[allow(clippy::too_many_arguments)]
    fn member_phase(
        &self,
        phase: usize,
        t: usize,
        members: &[Member],
        slot: &mut Slot<'_>,
        common: &mut Common,
        lead: bool,
        gamma: f64,
        task: Task,
    ) -> bool {
        let (n, parts) = (self.n, members.len());
        let ht = self.member_cut(t + 1, parts) - self.member_cut(t, parts);
        let me = &members[t];
        let mut guard = lock(&me.own);
        let own = &mut *guard;
        let inner = task.gw || task.beta.is_some();
        let kt = if task.du || inner {
            2 * n
        } else if task.dv {
            n
        } else {
            0
        };
        let kv = if task.du || task.dv { n } else { 0 };
        let kw = if task.du { n } else { 0 };
        let mut vw = own.vw.as_mut().subrows_mut(0, ht);
        let mut d = own.d.as_mut().subrows_mut(0, ht);
        let w1 = slot.w1.get();
        match phase {
            1 => {
                // This part's partial of Z = W1 [W2, w].
                vw.rb_mut().subcols_mut(0, n).copy_from(slot.w2.get());
                vw.rb_mut().subcols_mut(n, n).copy_from(slot.w.get());
                mul(write(&me.zp).as_mut(), w1, vw.rb());
                return true;
            }
            2 => {
                // Z, and this part's rows of the passes over X_trn and X_val.
                if lead && parts == 1 {
                    // One part: its partial is Z (swapped in, not copied).
                    std::mem::swap(&mut common.z, &mut *write(&me.zp));
                } else if lead {
                    sum_parts(members, |x| &x.zp, 2 * n, common.z.as_mut());
                }
                let z = common.z.as_ref();
                self.ls_trn
                    .pass_part(z, kt, (t, parts), &mut write(&me.pass_t));
                self.ls_val
                    .pass_part(z.subcols(0, n), kv, (t, parts), &mut write(&me.pass_v));
                return true;
            }
            3 => {
                // The Z-gradients, and this part's rows of the v-gradients.
                if lead {
                    let sums = if parts == 1 {
                        write(&me.pass_t).swap_g(&mut common.gt)
                    } else {
                        let gt = common.gt.as_mut().subcols_mut(0, kt);
                        sum_parts(members, |x| &x.pass_t, kt, gt)
                    };
                    let [g, g_star] = self.ls_trn.values(sums, 2);
                    let gc = common.gc.as_mut().subcols_mut(0, kv);
                    let sums = sum_parts(members, |x| &x.pass_v, kv, gc);
                    let [f, _] = self.ls_val.values(sums, 1);
                    common.values = [f, g, g_star];
                    let (gt, mut gc) = (common.gt.as_ref(), common.gc.as_mut());
                    cols_axpy(
                        gamma,
                        gt.subcols(0, kv),
                        gc.rb_mut().subcols_mut(0, kv),
                        false,
                    );
                    if task.dv && inner {
                        // [∇_Z L_γ, ∇_Z g(u, w)] for one W1ᵀ product (gc's second half becomes
                        // −γ ∇_Z g(u, w') in the last phase, after every part used this).
                        let mut gd = common.gd.as_mut();
                        gd.rb_mut()
                            .subcols_mut(0, n)
                            .copy_from(gc.rb().subcols(0, n));
                        gd.subcols_mut(n, n).copy_from(gt.subcols(n, n));
                    }
                }
                let (gt, gc) = (common.gt.as_ref(), common.gc.as_ref());
                let w1t = w1.transpose();
                match (task.dv, inner) {
                    (true, true) => mul(d.rb_mut(), w1t, common.gd.as_ref()),
                    (true, false) => mul(d.rb_mut().subcols_mut(0, n), w1t, gc.subcols(0, n)),
                    (false, true) => mul(d.rb_mut().subcols_mut(n, n), w1t, gt.subcols(n, n)),
                    (false, false) => {}
                }
                if let Some(beta) = task.beta {
                    // w' = w − β ∇_v g(u, w) on this part's rows, and its partial of W1 ∇_v g.
                    let gw_t = d.rb().subcols(n, n);
                    cols_axpy(-beta, gw_t, vw.rb_mut().subcols_mut(n, n), false);
                    mul(write(&me.e).as_mut(), w1, gw_t);
                    return true;
                }
            }
            4 => {
                // Z at w' (Z_w − β W1 ∇_v g), and this part's rows of the pass there.
                let beta = task.beta.expect("phase 4 follows an inner step");
                if lead {
                    let mut gt = common.gt.as_mut().subcols_mut(n, n);
                    sum_parts(members, |x| &x.e, n, gt.rb_mut());
                    cols_axpy(-beta, gt.rb(), common.z.as_mut().subcols_mut(n, n), false);
                }
                let zw = common.z.as_ref().subcols(n, n);
                self.ls_trn
                    .pass_part(zw, kw, (t, parts), &mut write(&me.pass_w));
                return true;
            }
            _ => {
                if lead {
                    let gt = common.gt.as_mut().subcols_mut(n, kw);
                    let sums = sum_parts(members, |x| &x.pass_w, kw, gt);
                    [common.values[2], _] = self.ls_trn.values(sums, 1);
                }
            }
        }
        // Last phase: this part's blocks of the outputs and steps (no other part reads them).
        if task.du && lead {
            let (gt, gc) = (common.gt.as_ref(), common.gc.as_mut());
            cols_axpy(-gamma, gt.subcols(n, n), gc.subcols_mut(n, n), true);
        }
        let gc = common.gc.as_ref();
        if let (Some(_), Block::Mut(w)) = (task.beta, &mut slot.w) {
            w.copy_from(vw.rb().subcols(n, n));
        }
        if task.du {
            let vwt = vw.rb().transpose();
            match (task.alpha_u, &mut slot.w1, slot.du.as_mut()) {
                (Some(alpha), Block::Mut(w1), _) => {
                    matmul(w1.rb_mut(), Accum::Add, gc, vwt, -alpha, Par::Seq)
                }
                (_, _, Some(du)) => mul(du.rb_mut(), gc, vwt),
                _ => {}
            }
        }
        if let (Some(alpha), Block::Mut(w2)) = (task.alpha_v, &mut slot.w2) {
            cols_axpy(-alpha, d.rb().subcols(0, n), w2.rb_mut(), false);
        }
        if let Some(dv) = slot.dv.as_mut() {
            dv.copy_from(d.rb().subcols(0, n));
        }
        if let Some(gw) = slot.gw.as_mut() {
            gw.copy_from(d.rb().subcols(n, n));
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg;
    use crate::problems::replearn::{Regime, RepSizes};

    /// The team evaluation gives the one-part results for any number of parts (to rounding:
    /// the partials are summed in another order), and for a given number of parts the same
    /// bits every time and whoever runs them: the team, or the caller alone (as a rayon worker
    /// does). Parts beyond the cores (3 on two) only cost time.
    #[test]
    fn team_members_agree_with_one_thread() {
        // A tiny instance, and one whose passes read the R of a QR (N ≥ m: the parts split
        // the triangle's rows by nonzeros).
        let tall = RepSizes {
            n_trn: 300,
            n_val: 250,
            m: 200,
            h: 220,
            n: 12,
            ..RepSizes::default_for(Regime::General)
        };
        for sizes in [RepSizes::quick_for(Regime::General), tall] {
            agree_with_one_thread(&RepLearning::generate(Regime::General, &sizes, 3).unwrap());
        }
    }

    fn agree_with_one_thread(p: &RepLearning) {
        let (u0, v0) = p.init(1);
        let w0: Vec<f64> = v0.iter().map(|x| 0.5 * x + 0.01).collect();
        let (du, dv) = (u0.len(), v0.len());
        let run = |parts: usize| {
            let step = Task {
                du: true,
                alpha_u: Some(1e-3),
                dv: true,
                alpha_v: Some(2e-3),
                beta: Some(3e-3),
                parts: Some(parts),
                ..Task::default()
            };
            // Gauss–Seidel's two calls: ∇_v L_γ with ∇_v g(u, w), then the u step alone.
            let gs_eval = Task {
                dv: true,
                gw: true,
                parts: Some(parts),
                ..Task::default()
            };
            let gs_step = Task {
                du: true,
                alpha_u: Some(1e-3),
                parts: Some(parts),
                ..Task::default()
            };
            let (mut u, mut v, mut w) = (u0.clone(), v0.clone(), w0.clone());
            let mut vals = Vec::new();
            for _ in 0..3 {
                let (uu, vv) = (Var::Mut(&mut u), Var::Mut(&mut v));
                let ww = Var::Mut(&mut w);
                vals.extend(p.fused(uu, vv, ww, 7.0, step, None, None, None));
                let (mut gv, mut gw) = (vec![0.0; dv], vec![0.0; dv]);
                let (uu, vv, ww) = (Var::Ref(&u), Var::Ref(&v), Var::Ref(&w));
                let outs = (Some(&mut gv[..]), Some(&mut gw[..]));
                vals.extend(p.fused(uu, vv, ww, 7.0, gs_eval, None, outs.0, outs.1));
                vals.extend(gv.iter().chain(&gw));
                linalg::axpy(-2e-3, &gv, &mut v);
                let (uu, vv, ww) = (Var::Mut(&mut u), Var::Ref(&v), Var::Ref(&w));
                vals.extend(p.fused(uu, vv, ww, 7.0, gs_step, None, None, None));
            }
            let eval = Task {
                du: true,
                dv: true,
                gw: true,
                parts: Some(parts),
                ..Task::default()
            };
            let (mut gu, mut gv, mut gw) = (vec![0.0; du], vec![0.0; dv], vec![0.0; dv]);
            let (uu, vv, ww) = (Var::Ref(&u), Var::Ref(&v), Var::Ref(&w));
            let outs = (Some(&mut gu[..]), Some(&mut gv[..]), Some(&mut gw[..]));
            vals.extend(p.fused(uu, vv, ww, 7.0, eval, outs.0, outs.1, outs.2));
            [vals, u, v, w, gu, gv, gw]
        };
        let one = run(1);
        for parts in [2, 3] {
            let many = run(parts);
            assert_eq!(many, run(parts), "{parts} members: not reproducible");
            let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build();
            let alone = pool.expect("a pool").install(|| run(parts));
            assert_eq!(many, alone, "{parts} parts on one thread: other bits");
            for (a, b) in one.iter().zip(&many) {
                let scale = a.iter().fold(0.0f64, |s, x| s.max(x.abs()));
                let err = a
                    .iter()
                    .zip(b)
                    .fold(0.0f64, |s, (x, y)| s.max((x - y).abs()));
                assert!(
                    err <= 1e-13 * scale,
                    "{parts} members: {err:e} (scale {scale:e})"
                );
            }
        }
    }
}
