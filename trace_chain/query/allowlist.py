"""What user SQL may use: grammar, clauses and functions, each an allowlist reviewed by hand.

DuckDB's file, URL and catalog readers are functions (`read_csv`, `glob`, `query`,
`duckdb_settings`), and a denylist misses the next one (`sniff_csv` once read files with
external access off), so nothing is allowed unless it is named here. Tests hold this list
against the real engine: every DuckDB function not named here is refused by the gate, and
every one named here is accepted and runs.
"""

from __future__ import annotations

from sqlglot import exp

# DuckDB functions by the name DuckDB knows them (case-insensitive), grouped for review. Each is
# a pure function of its arguments: no files, URLs, settings, catalog, sequences, sleeps, logs
# or SQL in strings. Left out on purpose, among others: current_setting, getvariable, version,
# current_database/schema/user/query, txid_current, pg_* and has_*_privilege (introspection);
# nextval/currval/setseed (state); sleep_ms/pg_sleep; write_log; error; json_serialize_sql and
# json_deserialize_sql (SQL in strings); list_aggregate (calls an aggregate named in a string);
# parse_path and friends; stats/alias/vector_type/finalize/combine (engine internals).
# `unnest` is here for its select-list form; in FROM it is a table function and refused.
# approx_top_k is out because sqlglot cannot write it back for DuckDB.
ALLOWED_FUNCTION_NAMES: frozenset[str] = frozenset(
    # A word list reviews better than 500 quoted strings.
    """
    abs acos acosh asin asinh atan atan2 atanh cbrt ceil ceiling cos cosh cot degrees even exp
    factorial floor gamma gcd greatest greatest_common_divisor isfinite isinf isnan lcm least
    least_common_multiple lgamma ln log log10 log2 mod nextafter pi pow power radians random
    round round_even roundbankers sign signbit sin sinh sqrt tan tanh trunc add subtract multiply
    divide fdiv fmod xor bit_count get_bit set_bit bit_length bit_position

    uuid gen_random_uuid uuidv4 uuidv7 uuid_extract_timestamp uuid_extract_version

    ascii bar char_length character_length chr concat concat_ws contains ends_with format printf
    instr lcase left
    left_grapheme len length length_grapheme lower lpad ltrim md5 md5_number md5_number_lower
    md5_number_upper nfc_normalize octet_length ord position prefix suffix regexp_escape
    regexp_extract regexp_extract_all regexp_full_match regexp_matches regexp_replace
    regexp_split_to_array repeat replace reverse right right_grapheme rpad rtrim sha1 sha256
    split split_part starts_with str_split str_split_regex string_split string_split_regex
    string_to_array strip_accents strlen strpos substr substring substring_grapheme translate
    trim ucase unicode upper url_decode url_encode hash
    levenshtein damerau_levenshtein editdist3 hamming mismatches jaccard jaro_similarity
    jaro_winkler_similarity
    base64 to_base64 from_base64 hex to_hex unhex from_hex bin to_binary from_binary unbin encode
    decode to_base format_bytes formatreadablesize formatreadabledecimalsize
    parse_formatted_bytes like_escape ilike_escape not_like_escape not_ilike_escape

    age ago century current_date current_localtime current_localtimestamp date_add date_diff
    date_part date_sub date_trunc datediff datepart datesub datetrunc day dayname dayofmonth
    dayofweek dayofyear days_in_month decade epoch epoch_ms epoch_ns epoch_us era
    get_current_time get_current_timestamp hour isodow isoyear julian last_day make_date
    make_time make_timestamp make_timestamp_ms make_timestamp_ns make_timestamptz microsecond
    millennium millisecond minute month monthname nanosecond now normalized_interval quarter
    second strftime strptime time_bucket timezone timezone_hour timezone_minute to_centuries
    to_days to_decades to_hours to_microseconds to_millennia to_milliseconds to_minutes
    to_months to_quarters to_seconds to_timestamp to_weeks to_years today transaction_timestamp
    try_strptime week weekday weekofyear year yearweek

    array_append array_apply array_cat array_concat array_contains array_cosine_distance
    array_cosine_similarity array_cross_product array_distance array_distinct array_dot_product
    array_extract array_filter array_grade_up array_has array_has_all array_has_any
    array_indexof array_inner_product array_intersect array_length array_negative_dot_product
    array_negative_inner_product array_pop_back array_pop_front array_position array_prepend
    array_push_back array_push_front array_reduce array_resize array_reverse array_reverse_sort
    array_select array_slice array_sort array_to_string array_to_string_comma_default
    array_transform array_unique array_value array_where array_zip
    list_any_value list_append list_apply list_approx_count_distinct list_avg list_bit_and
    list_bit_or list_bit_xor list_bool_and list_bool_or list_cat list_concat list_contains
    list_cosine_distance list_cosine_similarity list_count list_distance list_distinct
    list_dot_product list_element list_entropy list_extract list_filter list_first
    list_grade_up list_has list_has_all list_has_any list_histogram list_indexof
    list_inner_product list_intersect list_kurtosis list_kurtosis_pop list_last list_mad
    list_max list_median list_min list_mode list_negative_dot_product
    list_negative_inner_product list_pack list_position list_prepend list_product list_reduce
    list_resize list_reverse list_reverse_sort list_select list_sem list_skewness list_slice
    list_sort list_stddev_pop list_stddev_samp list_string_agg list_sum list_transform
    list_unique list_value list_var_pop list_var_samp list_where list_zip
    flatten filter reduce range generate_series generate_subscripts cardinality element_at
    grade_up

    struct_concat struct_contains struct_extract struct_extract_at struct_has struct_indexof
    struct_insert struct_keys struct_pack struct_position struct_update struct_values row map
    map_concat map_contains map_contains_entry map_contains_value map_entries map_extract
    map_extract_value map_from_entries map_keys map_values

    json json_array json_array_length json_contains json_exists json_extract json_extract_path
    json_extract_path_text json_extract_string json_keys json_merge_patch json_object
    json_pretty json_quote json_structure json_transform json_transform_strict json_type
    json_valid json_value to_json array_to_json row_to_json from_json from_json_strict
    json_group_array json_group_object json_group_structure

    any_value approx_count_distinct approx_quantile arbitrary arg_max arg_max_null
    arg_max_nulls_last arg_min arg_min_null arg_min_nulls_last argmax argmin array_agg avg
    bit_and bit_or bit_xor bool_and bool_or corr count count_if count_star countif covar_pop
    covar_samp entropy favg first fsum geomean geometric_mean group_concat histogram
    histogram_exact kahan_sum kurtosis kurtosis_pop last list listagg mad max max_by mean median
    min min_by mode product quantile quantile_cont quantile_disc regr_avgx regr_avgy regr_count
    regr_intercept regr_r2 regr_slope regr_sxx regr_sxy regr_syy reservoir_quantile sem
    skewness stddev stddev_pop stddev_samp string_agg sum sum_no_overflow sumkahan var_pop
    var_samp variance wavg weighted_avg

    cume_dist dense_rank first_value lag last_value lead nth_value ntile percent_rank rank
    rank_dense row_number fill

    typeof nullif equi_width_bins is_histogram_other_bin

    unnest
    """.split()  # noqa: SIM905
)

# The sqlglot classes those names parse into (sqlglot types the functions it knows; the rest
# arrive as `exp.Anonymous` and are checked by name above). A class is allowed only because a
# name above produces it: tests check both directions against DuckDB's own function list.
ALLOWED_FUNCTION_CLASSES: frozenset[type[exp.Func]] = frozenset(
    {
        exp.Abs, exp.Acos, exp.Acosh, exp.AnyValue, exp.ApproxDistinct, exp.ApproxQuantile,
        exp.ArgMax, exp.ArgMin, exp.ArrayAgg, exp.ArrayAppend, exp.ArrayConcat,
        exp.ArrayContains, exp.ArrayContainsAll, exp.ArrayDistinct, exp.ArrayFilter,
        exp.ArrayIntersect, exp.ArrayMax, exp.ArrayMin, exp.ArrayOverlaps, exp.ArrayPosition,
        exp.ArrayPrepend, exp.ArrayReverse, exp.ArraySize, exp.ArraySlice, exp.ArraySort,
        exp.ArrayToString, exp.Ascii, exp.Asin, exp.Asinh, exp.Atan, exp.Atan2, exp.Atanh,
        exp.Avg, exp.BitLength, exp.BitwiseAndAgg, exp.BitwiseOrAgg, exp.BitwiseXorAgg,
        exp.Cbrt, exp.Ceil, exp.Chr, exp.Concat, exp.ConcatWs, exp.Contains, exp.Corr, exp.Cos,
        exp.Cosh, exp.CosineDistance, exp.Cot, exp.Count, exp.CountIf, exp.CovarPop,
        exp.CovarSamp, exp.CumeDist, exp.CurrentDate, exp.CurrentTime, exp.DateAdd,
        exp.DateBin, exp.DateDiff, exp.DateFromParts, exp.Day, exp.DayOfMonth, exp.DayOfWeek,
        exp.DayOfWeekIso, exp.DayOfYear, exp.Dayname, exp.Decode, exp.Degrees, exp.DenseRank,
        exp.Encode, exp.EndsWith, exp.EuclideanDistance, exp.Exp, exp.Factorial, exp.First,
        exp.FirstValue, exp.Flatten, exp.Floor, exp.Format, exp.FromBase64, exp.FromJson,
        exp.GenerateSeries, exp.Getbit, exp.Greatest, exp.GroupConcat, exp.Hex, exp.Hour,
        exp.IsInf, exp.IsNan, exp.JSONArray, exp.JSONExtract, exp.JSONExtractScalar,
        exp.JSONKeys, exp.JSONObject, exp.JSONType, exp.JarowinklerSimilarity, exp.Kurtosis,
        exp.Lag, exp.Last, exp.LastDay, exp.LastValue, exp.Lead, exp.Least, exp.Left,
        exp.Length, exp.Levenshtein, exp.Ln, exp.Localtimestamp, exp.Log, exp.LogicalAnd,
        exp.LogicalOr, exp.Lower, exp.MD5, exp.Map, exp.MapFromEntries, exp.MapKeys, exp.Max,
        exp.Median, exp.Min, exp.Minute, exp.Mode, exp.Month, exp.Monthname, exp.NthValue,
        exp.Ntile, exp.Nullif, exp.Pad, exp.ParseJSON, exp.PercentRank, exp.PercentileCont,
        exp.PercentileDisc, exp.Pi, exp.Pow, exp.Quantile, exp.Quarter, exp.Radians, exp.Rand,
        exp.Rank, exp.Reduce, exp.RegexpExtract, exp.RegexpExtractAll, exp.RegexpFullMatch,
        exp.RegexpLike, exp.RegexpReplace, exp.RegexpSplit, exp.RegrAvgx, exp.RegrAvgy,
        exp.RegrCount, exp.RegrIntercept, exp.RegrR2, exp.RegrSlope, exp.RegrSxx, exp.RegrSxy,
        exp.RegrSyy, exp.Repeat, exp.Replace, exp.Reverse, exp.Right, exp.Round,
        exp.RowNumber, exp.SHA, exp.SHA2, exp.Second, exp.Sign, exp.Sin, exp.Sinh,
        exp.Skewness, exp.Split, exp.SplitPart, exp.Sqrt, exp.StartsWith, exp.Stddev,
        exp.StddevPop, exp.StddevSamp, exp.StrPosition, exp.StrToTime, exp.Struct,
        exp.StructExtract, exp.Substring, exp.Sum, exp.Tan, exp.Tanh, exp.TimeFromParts,
        exp.TimeToStr, exp.TimeToUnix, exp.TimestampFromParts, exp.TimestampTrunc,
        exp.ToBase64, exp.ToBinary, exp.ToDays, exp.Transform, exp.Translate, exp.Trim,
        exp.Trunc, exp.Typeof, exp.Unhex, exp.Unicode, exp.UnixToTime, exp.Upper, exp.Uuid,
        exp.Variance, exp.VariancePop, exp.Week, exp.WeekOfYear, exp.Year,
    }
)  # fmt: skip

# Grammar: every other node type (DDL, DML, PRAGMA, SET, COPY, commands sqlglot could not
# type, INTO, FOR UPDATE, time travel, parameters, PIVOT...) is refused wherever it appears.
# Function-like syntax (CAST, CASE, COALESCE, EXTRACT, UNNEST in a select list, COLUMNS(...))
# is here too; UNNEST or any function in a FROM position is refused as a table function.
ALLOWED_SYNTAX: frozenset[type[exp.Expr]] = frozenset(
    {
        # query structure
        exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Subquery, exp.From, exp.Join,
        exp.Where, exp.Group, exp.Having, exp.Qualify, exp.Order, exp.Ordered, exp.Limit,
        exp.Offset, exp.With, exp.CTE, exp.Values, exp.Lateral, exp.Window, exp.WindowSpec,
        exp.TableSample, exp.Table, exp.TableAlias, exp.Distinct, exp.Cube, exp.Rollup,
        exp.GroupingSets,
        # names and values
        exp.Column, exp.Identifier, exp.Star, exp.Literal, exp.Boolean, exp.Null, exp.Alias,
        exp.Paren, exp.Tuple, exp.Array, exp.Struct, exp.PropertyEQ, exp.Bracket, exp.Slice,
        exp.Dot, exp.Lambda, exp.Comprehension, exp.Var, exp.DataType, exp.DataTypeParam,
        exp.Interval, exp.PositionalColumn, exp.RawString, exp.ByteString, exp.HexString,
        # function-like syntax
        exp.Cast, exp.TryCast, exp.Case, exp.If, exp.Coalesce, exp.Extract, exp.Columns,
        exp.Unnest, exp.Explode, exp.CurrentDate, exp.CurrentTime, exp.CurrentTimestamp,
        exp.Collate, exp.Filter, exp.IgnoreNulls, exp.RespectNulls, exp.WithinGroup,
        # predicates and operators
        exp.Exists, exp.In, exp.Any, exp.All, exp.Between, exp.Is, exp.Like, exp.ILike,
        exp.SimilarTo, exp.Glob, exp.RegexpLike, exp.RegexpILike, exp.Escape, exp.EQ, exp.NEQ,
        exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ, exp.And, exp.Or,
        exp.Not, exp.Xor, exp.Add, exp.Sub, exp.Mul, exp.Div, exp.IntDiv, exp.Mod, exp.Pow,
        exp.Neg, exp.BitwiseAnd, exp.BitwiseOr, exp.BitwiseXor, exp.BitwiseNot,
        exp.BitwiseLeftShift, exp.BitwiseRightShift, exp.DPipe, exp.JSONExtract,
        exp.JSONExtractScalar, exp.JSONPath, exp.JSONPathKey, exp.JSONPathRoot,
        exp.JSONPathSubscript,
    }
)  # fmt: skip

# Clauses each query-shaped node may carry; any other one set (INTO, FOR UPDATE, SETTINGS,
# CONNECT BY, table hints, time travel, a relation's partition or version...) is refused.
_QUERY = {"with_", "expressions", "distinct", "from_", "joins", "laterals", "where", "group"}
_QUERY |= {"having", "qualify", "windows", "order", "limit", "offset", "sample"}
_SET_OPERATION = {"with_", "this", "expression", "distinct", "by_name", "order", "limit"}
_SET_OPERATION |= {"offset"}
QUERY_CLAUSES: dict[type[exp.Expr], frozenset[str]] = {
    exp.Select: frozenset(_QUERY),
    exp.Union: frozenset(_SET_OPERATION),
    exp.Intersect: frozenset(_SET_OPERATION),
    exp.Except: frozenset(_SET_OPERATION),
    exp.Subquery: frozenset({"this", "alias", "order", "limit", "offset", "sample", "joins"}),
    exp.Table: frozenset({"this", "alias", "sample", "joins", "laterals", "pivots"}),
    exp.Join: frozenset({"this", "on", "side", "kind", "using", "method", "match_condition"}),
    exp.With: frozenset({"expressions", "recursive"}),
    exp.CTE: frozenset({"this", "alias", "materialized", "key_expressions"}),
}
