package featurestore.flink.windows;

import org.apache.flink.table.annotation.ArgumentHint;
import org.apache.flink.table.annotation.ArgumentTrait;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.table.annotation.StateHint;
import org.apache.flink.table.api.dataview.MapView;
import org.apache.flink.table.functions.ProcessTableFunction;
import org.apache.flink.types.Row;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Iterator;
import java.util.Map;

/**
 * The features of one window group of a feature table, computed incrementally per key: the
 * versions Flink's {@code OVER (RANGE BETWEEN W - 1 ms PRECEDING AND CURRENT ROW)} over the events
 * UNION ALL their expiry markers gives, without its cost.
 *
 * <p>Why. Flink's bounded OVER operator walks every row it holds for the key on every new row
 * time (to retract the ones that left the window): O(n) per event, O(n^2) per key. A user with a
 * million clicks in a 30-day window stalls a job. Here each event costs O(1) state operations at
 * its own time and at its expiry, plus, for min/max, a rescan of the window's distinct values
 * only when the extreme itself leaves.
 *
 * <p>Semantics (registry/reference.py). The value at T covers the events with event time in
 * (T - W, T]; events at equal times are all in. A version is emitted at every event time t and at
 * every t + W, once per key and time (Flink's OVER emits one row per input row, with equal
 * values), with {@code seq} the largest source position among the events arriving or leaving at
 * that time. Over an empty window count, sum and distinct count are 0; avg, min, max and last are
 * null. {@code last} is the newest non-null value by (event time, seq). The distinct count is
 * exact.
 *
 * <p>How. Each event is kept in a map state under its event time until it leaves the window; a
 * timer at t activates it (adds it to the running aggregates) and a timer at t + W retracts it.
 * A bounded replay passes its end as the spec's horizon: an expiry at or past it is not scheduled
 * (its version would be dropped by the write range, and it is computed from a history cut short
 * there anyway); without it, the replay's final watermark fires every such timer, up to W past
 * the end, and the job spends its last part computing versions nobody writes.
 * Counts and long sums are exact; double sums are compensated (Neumaier) and reset to 0 when the
 * window has no value left, so rounding never accumulates across empty windows. Late events
 * (behind the watermark) never reach {@code eval}: the framework and the compiled plan's filter
 * drop them, the same way for every group, and the dead-letter path takes them.
 *
 * <p>The call: {@code sliding_windows(input => TABLE t PARTITION BY key, on_time =>
 * DESCRIPTOR(__rt), spec => '...', uid => '...')}; {@code spec} is {@link Spec}'s text, written by
 * registry/compiler.py. The output is a fixed row of typed slots (8 BIGINT, 8 DOUBLE, 8 STRING)
 * the compiled SELECT casts and names.
 */
@FunctionHint(
        output =
                @DataTypeHint(
                        "ROW<version_ms BIGINT, seq BIGINT,"
                                + " l0 BIGINT, l1 BIGINT, l2 BIGINT, l3 BIGINT, l4 BIGINT, l5 BIGINT, l6 BIGINT, l7 BIGINT,"
                                + " d0 DOUBLE, d1 DOUBLE, d2 DOUBLE, d3 DOUBLE, d4 DOUBLE, d5 DOUBLE, d6 DOUBLE, d7 DOUBLE,"
                                + " s0 STRING, s1 STRING, s2 STRING, s3 STRING, s4 STRING, s5 STRING, s6 STRING, s7 STRING>"))
public class SlidingWindows extends ProcessTableFunction<Row> {

    private static final long serialVersionUID = 1L;

    /**
     * The running aggregates of one key ({@link Running}), packed into one byte array. A process
     * table function's value state is converted to and from Flink's internal rows, hashed and
     * compared on every call (eval and each timer); a POJO of ten arrays and the spec's text cost
     * more there than the aggregates themselves (JFR: ~13% of the JVM's samples in make demo). One
     * array is copied and hashed in one pass. Null: no event of the key is in the window.
     */
    public static class Acc {
        public byte[] data;
    }

    /** Where the call's spec is kept, per key, for timers that fire before any event reached this
     * instance (after a restore): timers do not get the call's arguments. A map view, read only then. */
    private static final String SPEC_KEY = "spec";

    private static final byte[] EMPTY = new byte[0];

    private transient String parsedText;
    private transient Spec parsed;

    private Spec spec(String text) {
        if (!text.equals(parsedText)) {
            parsed = Spec.parse(text);
            parsedText = text;
        }
        return parsed;
    }

    public void eval(
            Context ctx,
            @StateHint(ttl = "0") Acc acc,
            @StateHint(ttl = "0") MapView<Long, byte[]> events,
            @StateHint(ttl = "0") MapView<String, Long> extremes,
            @StateHint(ttl = "0") MapView<String, Long> distinct,
            @StateHint(ttl = "0") MapView<String, String> meta,
            @ArgumentHint(
                            value = {ArgumentTrait.SET_SEMANTIC_TABLE, ArgumentTrait.REQUIRE_ON_TIME},
                            name = "input")
                    Row input,
            @ArgumentHint(value = ArgumentTrait.SCALAR, name = "spec") String specText)
            throws Exception {
        Spec spec = spec(specText);
        if (acc.data == null) { // the key's first event, or its first since its window went empty
            acc.data = EMPTY;
            meta.put(SPEC_KEY, specText);
        }
        TimeContext<Long> time = ctx.timeContext(Long.class);
        long t = time.time();
        byte[] before = events.get(t);
        events.put(t, spec.append(before, input));
        time.registerOnTime(t);
        if (t + spec.windowMs < spec.horizonMs) {
            // past the horizon no version is written: the timer would only compute one to drop
            time.registerOnTime(t + spec.windowMs);
        }
    }

    public void onTimer(
            OnTimerContext ctx,
            Acc acc,
            MapView<Long, byte[]> events,
            MapView<String, Long> extremes,
            MapView<String, Long> distinct,
            MapView<String, String> meta)
            throws Exception {
        if (acc.data == null) {
            return; // nothing was ever added for this key
        }
        Spec spec = parsed != null ? parsed : restoredSpec(meta);
        Running running = Running.decode(spec, acc.data);
        long now = ctx.timeContext(Long.class).time();
        long seq = Long.MIN_VALUE;
        boolean changed = false;
        long leaving = now - spec.windowMs;
        byte[] left = events.get(leaving);
        if (left != null) {
            for (Spec.Event e : spec.decode(left)) {
                retract(spec, running, extremes, distinct, e, now);
                seq = Math.max(seq, e.seq);
            }
            events.remove(leaving);
            changed = true;
        }
        byte[] arrived = events.get(now);
        if (arrived != null) {
            for (Spec.Event e : spec.decode(arrived)) {
                add(spec, running, extremes, distinct, e, now);
                seq = Math.max(seq, e.seq);
            }
            changed = true;
        }
        if (!changed) {
            return;
        }
        collect(output(spec, running, now, seq));
        if (running.events == 0 && events.isEmpty()) {
            ctx.clearAllState(); // an idle key keeps no state
        } else {
            acc.data = running.encode(spec);
        }
    }

    private Spec restoredSpec(MapView<String, String> meta) throws Exception {
        String text = meta.get(SPEC_KEY);
        if (text == null) {
            throw new IllegalStateException(
                    "a window timer fired for a key with no stored spec: the state comes from an older version "
                            + "of fs_sliding_windows; start the job without that checkpoint (and backfill)");
        }
        return spec(text);
    }

    private static String member(int feature, Object value) {
        return feature + "\u0000" + value;
    }

    private static void add(
            Spec spec, Running acc, MapView<String, Long> extremes, MapView<String, Long> distinct, Spec.Event e, long now)
            throws Exception {
        acc.events++;
        for (int i = 0; i < spec.features.length; i++) {
            Spec.Feature f = spec.features[i];
            Object v = f.column < 0 ? Boolean.TRUE : e.values[f.column];
            if (v == null) {
                continue;
            }
            acc.n[i]++;
            switch (f.agg) {
                case COUNT:
                    break;
                case SUM:
                case AVG:
                    if (v instanceof Long && f.agg == Spec.Agg.SUM) {
                        acc.lsum[i] += (Long) v;
                    } else {
                        addCompensated(acc, i, ((Number) v).doubleValue());
                    }
                    break;
                case DISTINCT:
                    {
                        String m = member(i, v);
                        Long c = distinct.get(m);
                        distinct.put(m, c == null ? 1L : c + 1);
                        if (c == null) {
                            acc.lsum[i]++;
                        }
                        break;
                    }
                case MIN:
                case MAX:
                    {
                        String m = member(i, v);
                        Long c = extremes.get(m);
                        extremes.put(m, c == null ? 1L : c + 1);
                        if (!acc.has[i] || better(f, v, acc, i)) {
                            set(acc, i, v);
                        }
                        break;
                    }
                case LAST:
                    if (!acc.has[i] || now > acc.lastTs[i] || (now == acc.lastTs[i] && e.seq >= acc.lastSeq[i])) {
                        set(acc, i, v);
                        acc.lastTs[i] = now;
                        acc.lastSeq[i] = e.seq;
                    }
                    break;
                default:
                    throw new IllegalStateException("unknown aggregate " + f.agg);
            }
        }
    }

    private static void retract(
            Spec spec, Running acc, MapView<String, Long> extremes, MapView<String, Long> distinct, Spec.Event e, long now)
            throws Exception {
        acc.events--;
        for (int i = 0; i < spec.features.length; i++) {
            Spec.Feature f = spec.features[i];
            Object v = f.column < 0 ? Boolean.TRUE : e.values[f.column];
            if (v == null) {
                continue;
            }
            acc.n[i]--;
            switch (f.agg) {
                case COUNT:
                    break;
                case SUM:
                case AVG:
                    if (acc.n[i] == 0) { // empty: start again from an exact 0
                        acc.lsum[i] = 0;
                        acc.dsum[i] = 0;
                        acc.dcomp[i] = 0;
                    } else if (v instanceof Long && f.agg == Spec.Agg.SUM) {
                        acc.lsum[i] -= (Long) v;
                    } else {
                        addCompensated(acc, i, -((Number) v).doubleValue());
                    }
                    break;
                case DISTINCT:
                    {
                        String m = member(i, v);
                        Long c = distinct.get(m);
                        if (c == null || c <= 1) {
                            distinct.remove(m);
                            acc.lsum[i]--;
                        } else {
                            distinct.put(m, c - 1);
                        }
                        break;
                    }
                case MIN:
                case MAX:
                    {
                        String m = member(i, v);
                        Long c = extremes.get(m);
                        if (c == null || c <= 1) {
                            extremes.remove(m);
                            if (acc.has[i] && same(f, v, acc, i)) {
                                rescan(spec, acc, extremes, i);
                            }
                        } else {
                            extremes.put(m, c - 1);
                        }
                        break;
                    }
                case LAST:
                    // the newest non-null value left: every other one is older, so none is left
                    if (acc.has[i] && acc.lastTs[i] <= now - spec.windowMs) {
                        acc.has[i] = false;
                    }
                    break;
                default:
                    throw new IllegalStateException("unknown aggregate " + f.agg);
            }
        }
    }

    /** Neumaier's compensated summation: the rounding error of each addition is kept in dcomp. */
    private static void addCompensated(Running acc, int i, double x) {
        double sum = acc.dsum[i] + x;
        acc.dcomp[i] += Math.abs(acc.dsum[i]) >= Math.abs(x) ? (acc.dsum[i] - sum) + x : (x - sum) + acc.dsum[i];
        acc.dsum[i] = sum;
    }

    /** The extreme of feature {@code i} left the window: find the new one among the values left. */
    private static void rescan(Spec spec, Running acc, MapView<String, Long> extremes, int i) throws Exception {
        Spec.Feature f = spec.features[i];
        String prefix = i + "\u0000";
        acc.has[i] = false;
        Iterator<Map.Entry<String, Long>> it = extremes.iterator();
        while (it.hasNext()) {
            String m = it.next().getKey();
            if (!m.startsWith(prefix)) {
                continue;
            }
            String text = m.substring(prefix.length());
            Object v = f.kind == 'l' ? (Object) Long.parseLong(text) : (Object) Double.parseDouble(text);
            if (!acc.has[i] || better(f, v, acc, i)) {
                set(acc, i, v);
            }
        }
    }

    private static boolean better(Spec.Feature f, Object v, Running acc, int i) {
        int c = f.kind == 'l' ? Long.compare((Long) v, acc.lval[i]) : Double.compare((Double) v, acc.dval[i]);
        return f.agg == Spec.Agg.MAX ? c > 0 : c < 0;
    }

    private static boolean same(Spec.Feature f, Object v, Running acc, int i) {
        return f.kind == 'l' ? (Long) v == acc.lval[i] : Double.compare((Double) v, acc.dval[i]) == 0;
    }

    private static void set(Running acc, int i, Object v) {
        acc.has[i] = true;
        if (v instanceof Long) {
            acc.lval[i] = (Long) v;
        } else if (v instanceof Double) {
            acc.dval[i] = (Double) v;
        } else {
            acc.sval[i] = (String) v;
        }
    }

    private static Row output(Spec spec, Running acc, long now, long seq) {
        Row row = Row.withPositions(2 + 3 * Spec.SLOTS);
        row.setField(0, now);
        row.setField(1, seq);
        for (int i = 0; i < spec.features.length; i++) {
            Spec.Feature f = spec.features[i];
            Object value;
            switch (f.agg) {
                case COUNT:
                    value = acc.n[i];
                    break;
                case DISTINCT:
                    value = acc.lsum[i];
                    break;
                case SUM:
                    value = f.kind == 'l' ? (Object) acc.lsum[i] : (Object) (acc.dsum[i] + acc.dcomp[i]);
                    break;
                case AVG:
                    value = acc.n[i] == 0 ? null : (acc.dsum[i] + acc.dcomp[i]) / acc.n[i];
                    break;
                default: // MIN, MAX, LAST
                    value = !acc.has[i] ? null : f.out == 'l' ? acc.lval[i] : f.out == 'd' ? acc.dval[i] : acc.sval[i];
            }
            row.setField(f.position(), value);
        }
        return row;
    }


    /** The running aggregates of one key while a timer updates them; {@link Acc} keeps them. */
    static final class Running {
        long events; // events in the window
        final long[] n; // per feature: values counted (non-null, or events for count(*))
        final long[] lsum;
        final double[] dsum;
        final double[] dcomp; // Neumaier compensation of dsum
        final boolean[] has; // min/max/last: a value is present
        final long[] lval;
        final double[] dval;
        final String[] sval;
        final long[] lastTs;
        final long[] lastSeq;

        Running(int k) {
            n = new long[k];
            lsum = new long[k];
            dsum = new double[k];
            dcomp = new double[k];
            has = new boolean[k];
            lval = new long[k];
            dval = new double[k];
            sval = new String[k];
            lastTs = new long[k];
            lastSeq = new long[k];
        }

        /** Only what each aggregate reads: a count its n, a long sum n and lsum, a double sum or avg
         * n, dsum and dcomp, a distinct count n and lsum, min/max/last n, has and the value (last:
         * and its time and seq). */
        byte[] encode(Spec spec) {
            byte[][] strings = new byte[spec.features.length][];
            int size = 8;
            for (int i = 0; i < spec.features.length; i++) {
                Spec.Feature f = spec.features[i];
                size += 8;
                switch (f.agg) {
                    case COUNT:
                        break;
                    case DISTINCT:
                        size += 8;
                        break;
                    case SUM:
                    case AVG:
                        size += longSum(f) ? 8 : 16;
                        break;
                    default:
                        size += 1;
                        if (has[i]) {
                            if (f.kind == 's') {
                                strings[i] = sval[i].getBytes(StandardCharsets.UTF_8);
                                size += 4 + strings[i].length;
                            } else {
                                size += 8;
                            }
                            size += f.agg == Spec.Agg.LAST ? 16 : 0;
                        }
                }
            }
            ByteBuffer out = ByteBuffer.allocate(size);
            out.putLong(events);
            for (int i = 0; i < spec.features.length; i++) {
                Spec.Feature f = spec.features[i];
                out.putLong(n[i]);
                switch (f.agg) {
                    case COUNT:
                        break;
                    case DISTINCT:
                        out.putLong(lsum[i]);
                        break;
                    case SUM:
                    case AVG:
                        if (longSum(f)) {
                            out.putLong(lsum[i]);
                        } else {
                            out.putDouble(dsum[i]).putDouble(dcomp[i]);
                        }
                        break;
                    default:
                        out.put((byte) (has[i] ? 1 : 0));
                        if (has[i]) {
                            if (f.kind == 'l') {
                                out.putLong(lval[i]);
                            } else if (f.kind == 'd') {
                                out.putDouble(dval[i]);
                            } else {
                                out.putInt(strings[i].length).put(strings[i]);
                            }
                            if (f.agg == Spec.Agg.LAST) {
                                out.putLong(lastTs[i]).putLong(lastSeq[i]);
                            }
                        }
                }
            }
            return out.array();
        }

        static Running decode(Spec spec, byte[] data) {
            Running r = new Running(spec.features.length);
            if (data.length == 0) {
                return r; // the key's first timer
            }
            ByteBuffer in = ByteBuffer.wrap(data);
            r.events = in.getLong();
            for (int i = 0; i < spec.features.length; i++) {
                Spec.Feature f = spec.features[i];
                r.n[i] = in.getLong();
                switch (f.agg) {
                    case COUNT:
                        break;
                    case DISTINCT:
                        r.lsum[i] = in.getLong();
                        break;
                    case SUM:
                    case AVG:
                        if (longSum(f)) {
                            r.lsum[i] = in.getLong();
                        } else {
                            r.dsum[i] = in.getDouble();
                            r.dcomp[i] = in.getDouble();
                        }
                        break;
                    default:
                        r.has[i] = in.get() != 0;
                        if (r.has[i]) {
                            if (f.kind == 'l') {
                                r.lval[i] = in.getLong();
                            } else if (f.kind == 'd') {
                                r.dval[i] = in.getDouble();
                            } else {
                                byte[] utf8 = new byte[in.getInt()];
                                in.get(utf8);
                                r.sval[i] = new String(utf8, StandardCharsets.UTF_8);
                            }
                            if (f.agg == Spec.Agg.LAST) {
                                r.lastTs[i] = in.getLong();
                                r.lastSeq[i] = in.getLong();
                            }
                        }
                }
            }
            if (in.hasRemaining()) {
                throw new IllegalStateException("window state does not match the spec: " + in.remaining() + " bytes left");
            }
            return r;
        }

        /** A sum kept exact in a long (a BIGINT column), as add() does. */
        private static boolean longSum(Spec.Feature f) {
            return f.agg == Spec.Agg.SUM && f.kind == 'l';
        }
    }

    /**
     * A window group: {@code W;agg,column,kind,slot;...}. {@code column} is the input column (empty
     * for count of events), {@code kind} its type (l BIGINT, d DOUBLE, s STRING), {@code slot} the
     * output slot ({@code l3}, {@code d0}, ...). Events are kept as one byte array per event time:
     * per event its seq and the values of the columns the features read.
     */
    static final class Spec {
        static final int SLOTS = 8;

        enum Agg { COUNT, SUM, AVG, MIN, MAX, LAST, DISTINCT }

        static final class Feature {
            Agg agg;
            int column = -1; // index into Spec.columns, -1: count of events
            char kind; // the column's kind
            char out; // the slot's kind
            int slot;

            int position() {
                int base = out == 'l' ? 0 : out == 'd' ? SLOTS : 2 * SLOTS;
                return 2 + base + slot;
            }
        }

        static final class Event {
            long seq;
            Object[] values;
        }

        long windowMs;
        /** No version at or after this time is written (a bounded replay's end): the events'
         * expiries there are not scheduled. Long.MAX_VALUE: unbounded. */
        long horizonMs = Long.MAX_VALUE;
        String[] columns; // input column names the features read
        char[] kinds;
        Feature[] features;

        static Spec parse(String text) {
            String[] parts = text.split(";");
            Spec spec = new Spec();
            String[] head = parts[0].split("@", 2); // "<window_ms>" or "<window_ms>@<horizon_ms>"
            spec.windowMs = Long.parseLong(head[0]);
            if (head.length == 2) {
                spec.horizonMs = Long.parseLong(head[1]);
            }
            spec.features = new Feature[parts.length - 1];
            java.util.List<String> columns = new java.util.ArrayList<>();
            java.util.List<Character> kinds = new java.util.ArrayList<>();
            for (int i = 1; i < parts.length; i++) {
                String[] p = parts[i].split(",", -1);
                Feature f = new Feature();
                f.agg = Agg.valueOf(p[0]);
                if (!p[1].isEmpty()) {
                    int at = columns.indexOf(p[1]);
                    if (at < 0) {
                        columns.add(p[1]);
                        kinds.add(p[2].charAt(0));
                        at = columns.size() - 1;
                    }
                    f.column = at;
                }
                f.kind = p[2].isEmpty() ? 'l' : p[2].charAt(0);
                f.out = p[3].charAt(0);
                f.slot = Integer.parseInt(p[3].substring(1));
                if (f.slot < 0 || f.slot >= SLOTS) {
                    throw new IllegalArgumentException("slot out of range in " + text);
                }
                spec.features[i - 1] = f;
            }
            spec.columns = columns.toArray(new String[0]);
            spec.kinds = new char[kinds.size()];
            for (int i = 0; i < spec.kinds.length; i++) {
                spec.kinds[i] = kinds.get(i);
            }
            return spec;
        }

        byte[] append(byte[] before, Row input) {
            try {
                ByteArrayOutputStream bytes = new ByteArrayOutputStream(64 + (before == null ? 0 : before.length));
                if (before != null) {
                    bytes.write(before);
                }
                DataOutputStream out = new DataOutputStream(bytes);
                Object seq = input.getField("__seq");
                out.writeLong(seq == null ? 0L : ((Number) seq).longValue());
                for (int c = 0; c < columns.length; c++) {
                    Object v = input.getField(columns[c]);
                    out.writeBoolean(v != null);
                    if (v == null) {
                        continue;
                    }
                    if (kinds[c] == 'l') {
                        out.writeLong(((Number) v).longValue());
                    } else if (kinds[c] == 'd') {
                        out.writeDouble(((Number) v).doubleValue());
                    } else {
                        byte[] utf8 = v.toString().getBytes(StandardCharsets.UTF_8);
                        out.writeInt(utf8.length);
                        out.write(utf8);
                    }
                }
                out.flush();
                return bytes.toByteArray();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }

        java.util.List<Event> decode(byte[] blob) {
            java.util.List<Event> events = new java.util.ArrayList<>();
            try {
                DataInputStream in = new DataInputStream(new ByteArrayInputStream(blob));
                while (in.available() > 0) {
                    Event e = new Event();
                    e.seq = in.readLong();
                    e.values = new Object[columns.length];
                    for (int c = 0; c < columns.length; c++) {
                        if (!in.readBoolean()) {
                            continue;
                        }
                        if (kinds[c] == 'l') {
                            e.values[c] = in.readLong();
                        } else if (kinds[c] == 'd') {
                            e.values[c] = in.readDouble();
                        } else {
                            byte[] utf8 = new byte[in.readInt()];
                            in.readFully(utf8);
                            e.values[c] = new String(utf8, StandardCharsets.UTF_8);
                        }
                    }
                    events.add(e);
                }
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            return events;
        }
    }
}
