package featurestore.backfill.replay;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import org.apache.flink.configuration.ConfigOption;
import org.apache.flink.configuration.ConfigOptions;
import org.apache.flink.configuration.ReadableConfig;
import org.apache.flink.table.api.ValidationException;
import org.apache.flink.table.catalog.Column;
import org.apache.flink.table.catalog.ResolvedSchema;
import org.apache.flink.table.connector.source.DynamicTableSource;
import org.apache.flink.table.factories.DynamicTableSourceFactory;
import org.apache.flink.table.factories.FactoryUtil;
import org.apache.flink.table.types.logical.LogicalType;

/** {@code 'connector' = 'hdfs-replay'}: history files as P ordered, partitioned streams. */
public final class ReplayTableFactory implements DynamicTableSourceFactory {
    public static final String IDENTIFIER = "hdfs-replay";

    public static final ConfigOption<String> PATH = ConfigOptions.key("path").stringType().noDefaultValue()
            .withDescription("root of the batch layout: a local path, file://... or hdfs://host:port/...");
    public static final ConfigOption<String> LAYOUT = ConfigOptions.key("layout").stringType().noDefaultValue()
            .withDescription("files under the root, e.g. events/clicks/dt={date}/hour={hour}/*.avro");
    public static final ConfigOption<String> FORMAT = ConfigOptions.key("format").stringType().defaultValue("avro")
            .withDescription("file format: avro or parquet");
    public static final ConfigOption<Integer> PARTITIONS = ConfigOptions.key("partitions").intType()
            .noDefaultValue().withDescription("number of partitions (splits), as the source's Kafka topic has");
    public static final ConfigOption<String> KEY_FIELDS = ConfigOptions.key("key.fields").stringType()
            .noDefaultValue().withDescription("comma-separated entity key columns");
    public static final ConfigOption<String> EVENT_TIME_FIELD = ConfigOptions.key("event-time.field").stringType()
            .noDefaultValue().withDescription("event-time column, a long of epoch milliseconds");
    public static final ConfigOption<Long> START_MS = ConfigOptions.key("scan.start-ms").longType()
            .noDefaultValue().withDescription("first event time replayed (inclusive)");
    public static final ConfigOption<Long> END_MS = ConfigOptions.key("scan.end-ms").longType().noDefaultValue()
            .withDescription("end of the event-time range (exclusive)");
    public static final ConfigOption<Double> RATE = ConfigOptions.key("rate-limit.events-per-second").doubleType()
            .noDefaultValue().withDescription("optional limit on the whole source's emit rate");
    public static final ConfigOption<Long> RATE_FROM_MS = ConfigOptions.key("rate-limit.from-ms").longType()
            .noDefaultValue().withDescription("apply the rate limit from this event time on (default: to every row), "
                    + "so a replay runs at full speed up to a point and at the chosen rate after it");
    public static final ConfigOption<Double> SPEED_UP = ConfigOptions.key("rate-limit.speed-up").doubleType()
            .noDefaultValue().withDescription("replay in event time this many times faster than the events happened "
                    + "(from rate-limit.from-ms on): dense and sparse partitions keep step in event time, like a live stream; "
                    + "each reader starts its clock at its first paced row");
    public static final ConfigOption<Long> MAX_LATENESS_MS = ConfigOptions.key("max-lateness-ms").longType()
            .defaultValue(3_600_000L)
            .withDescription("how far an event's time can lie before the start of its file's landing period");
    public static final ConfigOption<String> ON_LATE = ConfigOptions.key("on-late").stringType()
            .defaultValue("fail").withDescription("a row beyond max-lateness: fail (default) or drop (counted)");

    @Override
    public String factoryIdentifier() {
        return IDENTIFIER;
    }

    @Override
    public Set<ConfigOption<?>> requiredOptions() {
        return Set.of(PATH, LAYOUT, PARTITIONS, KEY_FIELDS, EVENT_TIME_FIELD);
    }

    @Override
    public Set<ConfigOption<?>> optionalOptions() {
        return Set.of(FORMAT, START_MS, END_MS, RATE, RATE_FROM_MS, SPEED_UP, MAX_LATENESS_MS, ON_LATE,
                FactoryUtil.WATERMARK_EMIT_STRATEGY, FactoryUtil.WATERMARK_ALIGNMENT_GROUP, FactoryUtil.WATERMARK_ALIGNMENT_MAX_DRIFT,
                FactoryUtil.WATERMARK_ALIGNMENT_UPDATE_INTERVAL, FactoryUtil.SOURCE_IDLE_TIMEOUT);
    }

    @Override
    public DynamicTableSource createDynamicTableSource(Context context) {
        FactoryUtil.TableFactoryHelper helper = FactoryUtil.createTableFactoryHelper(this, context);
        helper.validate();
        ReadableConfig options = helper.getOptions();
        ReplayOptions.Format format;
        try {
            format = ReplayOptions.Format.valueOf(options.get(FORMAT).toUpperCase(java.util.Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new ValidationException("hdfs-replay: 'format' must be avro or parquet, not " + options.get(FORMAT));
        }
        int partitions = options.get(PARTITIONS);
        if (partitions < 1) {
            throw new ValidationException("hdfs-replay: 'partitions' must be at least 1, not " + partitions);
        }
        ReplayOptions.OnLate onLate;
        try {
            onLate = ReplayOptions.OnLate.valueOf(options.get(ON_LATE).toUpperCase(java.util.Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new ValidationException("hdfs-replay: 'on-late' must be fail or drop, not " + options.get(ON_LATE));
        }
        long maxLateness = options.get(MAX_LATENESS_MS);
        if (maxLateness < 0) {
            throw new ValidationException("hdfs-replay: 'max-lateness-ms' must not be negative");
        }
        ResolvedSchema schema = context.getCatalogTable().getResolvedSchema();
        List<String> names = new ArrayList<>();
        List<LogicalType> types = new ArrayList<>();
        for (Column column : schema.getColumns()) {
            if (column.isPhysical()) {
                LogicalType type = column.getDataType().getLogicalType();
                if (!RowDecoder.supported(type)) {
                    throw new ValidationException("hdfs-replay: column '" + column.getName() + "' has type " + type
                            + "; supported: BIGINT, INT, SMALLINT, TINYINT, DOUBLE, FLOAT, BOOLEAN, STRING, "
                            + "TIMESTAMP(3), TIMESTAMP_LTZ(3) (from epoch ms)");
                }
                names.add(column.getName());
                types.add(type);
            }
        }
        List<String> keys = Arrays.stream(options.get(KEY_FIELDS).split(",")).map(String::trim)
                .filter(s -> !s.isEmpty()).toList();
        if (keys.isEmpty()) {
            throw new ValidationException("hdfs-replay: 'key.fields' names no column");
        }
        Long start = options.getOptional(START_MS).orElse(Long.MIN_VALUE);
        Long end = options.getOptional(END_MS).orElse(Long.MAX_VALUE);
        if (start >= end) {
            throw new ValidationException("hdfs-replay: scan.start-ms must be below scan.end-ms");
        }
        ReplayOptions opts = new ReplayOptions(options.get(PATH), options.get(LAYOUT), format, partitions, keys,
                options.get(EVENT_TIME_FIELD), start, end, options.getOptional(RATE).orElse(0.0),
                options.getOptional(RATE_FROM_MS).orElse(Long.MIN_VALUE), options.getOptional(SPEED_UP).orElse(0.0),
                maxLateness, onLate,
                names, types, List.of());
        return new ReplayTableSource(opts, context.getObjectIdentifier().asSummaryString());
    }
}
