# Sourced by the benchmarks: one release build of both binaries with one feature set (building
# them with different commands unifies dependency features differently and rebuilds the tree).
# Sets $bin_tap and $bin_target. bench/run.sh builds once and exports BENCH_BUILT=1.
rel=${CARGO_TARGET_DIR:-target}/release
if [ -z "${BENCH_BUILT:-}" ]; then
  cargo build --release -q --locked -p tap-webhook -p target-warehouse
fi
bin_tap=$rel/tap-webhook
bin_target=$rel/target-warehouse
