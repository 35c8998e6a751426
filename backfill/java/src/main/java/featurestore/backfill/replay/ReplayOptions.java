package featurestore.backfill.replay;

import java.io.Serializable;
import java.util.List;
import org.apache.flink.table.types.logical.LogicalType;

/** Everything a replay needs, fixed at planning time. */
public final class ReplayOptions implements Serializable {
    private static final long serialVersionUID = 1L;

    /** What to do with a row whose event time is below its file's horizon (see docs/backfill.md). */
    public enum OnLate { FAIL, DROP }

    /** The history files' format. */
    public enum Format { AVRO, PARQUET }

    final String root;
    final String layout;
    final Format format;
    final int partitions;
    final List<String> keyFields;
    final String eventTimeField;
    final long startMs;
    final long endMs;
    final double eventsPerSecond;
    /** The rate limit applies to rows from this event time on (Long.MIN_VALUE: to every row). */
    final long rateFromMs;
    /** Event-time pacing (0: off): rows from rateFromMs on are emitted this many times faster than they happened. */
    final double speedUp;
    final long maxLatenessMs;
    final OnLate onLate;
    /** The produced physical columns (names and Flink types), in table order. */
    final List<String> fieldNames;
    final List<LogicalType> fieldTypes;
    /** Metadata keys appended after the physical columns, in order. */
    final List<String> metadataKeys;

    ReplayOptions(String root, String layout, Format format, int partitions, List<String> keyFields, String eventTimeField,
            long startMs, long endMs, double eventsPerSecond, long rateFromMs, double speedUp, long maxLatenessMs, OnLate onLate,
            List<String> fieldNames, List<LogicalType> fieldTypes, List<String> metadataKeys) {
        this.root = root;
        this.layout = layout;
        this.format = format;
        this.partitions = partitions;
        this.keyFields = List.copyOf(keyFields);
        this.eventTimeField = eventTimeField;
        this.startMs = startMs;
        this.endMs = endMs;
        this.eventsPerSecond = eventsPerSecond;
        this.rateFromMs = rateFromMs;
        this.speedUp = speedUp;
        this.maxLatenessMs = maxLatenessMs;
        this.onLate = onLate;
        this.fieldNames = List.copyOf(fieldNames);
        this.fieldTypes = List.copyOf(fieldTypes);
        this.metadataKeys = List.copyOf(metadataKeys);
    }

    ReplayOptions withProduced(List<String> names, List<LogicalType> types, List<String> metadata) {
        return new ReplayOptions(root, layout, format, partitions, keyFields, eventTimeField, startMs, endMs, eventsPerSecond,
                rateFromMs, speedUp, maxLatenessMs, onLate, names, types, metadata);
    }
}
