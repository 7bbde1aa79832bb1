# Sourced by bench/soak.sh and bench/web-cost.sh: the demo station (made by
# `cdo-inspect demo` on first use: model, line with one corrupt frame, simulated GPIO)
# as a looping line with its own records, archive and edge log.
#
#   demo_line DIR NAME RATE    writes DIR/NAME.toml, its outputs under DIR/NAME/

demo_line() {
    local dir="$1" name="$2" rate="$3"
    if [ ! -f "$dir/station.toml" ] || [ ! -f "$dir/model/model.toml" ]; then
        mkdir -p "$dir"
        echo "preparing the demo station in $dir (log: $dir/demo.log)"
        "$bin" demo --dir "$dir" >"$dir/demo.log" 2>&1 || { echo "demo failed: see $dir/demo.log" >&2; exit 1; }
    fi
    rm -rf "${dir:?}/$name"
    mkdir -p "$dir/$name"
    sed -e 's/^loop = false.*/loop = true/' \
        -e "s/^rate_hz = .*/rate_hz = $rate/" \
        -e "s|^dir = \"records\"|dir = \"$name/records\"|" \
        -e "s|^dir = \"archive\"|dir = \"$name/archive\"|" \
        -e "s|^edge_log = .*|edge_log = \"$name/gpio-edges.jsonl\"|" \
        -e 's/^level = .*/level = "warn"/' \
        "$dir/station.toml" >"$dir/$name.toml"
    grep -q '^loop = true' "$dir/$name.toml" || { echo "could not set loop = true in $dir/$name.toml" >&2; exit 2; }
}
