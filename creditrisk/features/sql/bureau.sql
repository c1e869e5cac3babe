-- Credit-bureau features: one row per applicant (SK_ID_CURR) with at least one bureau record.
--
-- Reads `bureau`, one row per credit the applicant holds or held at another institution.
-- Amounts are in the loan currency; DAYS_* are days relative to the application (negative).
-- The counts are 0 when the applicant has bureau rows but none in that state; an applicant with
-- no bureau rows at all has no row here, so the feature store left join makes every bureau
-- feature NULL for them (FEATURES.md: counts are 0 only where stated).

with

bureau_credits as (

    select
        SK_ID_CURR,
        SK_ID_BUREAU,
        CREDIT_ACTIVE,
        DAYS_CREDIT,
        DAYS_CREDIT_UPDATE,
        AMT_CREDIT_SUM,
        AMT_CREDIT_SUM_DEBT,
        AMT_CREDIT_SUM_LIMIT,
        AMT_CREDIT_SUM_OVERDUE,
        AMT_CREDIT_MAX_OVERDUE,
        CNT_CREDIT_PROLONG
    from bureau

),

-- utilisation: the share of a credit still owed; NULL when the credit amount is 0 or NULL
credit_utilisation as (

    select
        *,
        AMT_CREDIT_SUM_DEBT / nullif(AMT_CREDIT_SUM, 0) as debt_to_credit
    from bureau_credits

),

final as (

    select
        SK_ID_CURR,
        count(case when CREDIT_ACTIVE = 'Active' then 1 end) as BUREAU_N_ACTIVE,
        count(case when CREDIT_ACTIVE = 'Closed' then 1 end) as BUREAU_N_CLOSED,
        -- the largest (least negative) day is the most recent
        max(DAYS_CREDIT) as BUREAU_LAST_CREDIT_DAYS,
        max(DAYS_CREDIT_UPDATE) as BUREAU_LAST_UPDATE_DAYS,
        sum(AMT_CREDIT_SUM_DEBT) as BUREAU_TOTAL_DEBT,
        sum(AMT_CREDIT_SUM) as BUREAU_TOTAL_CREDIT,
        sum(AMT_CREDIT_SUM_LIMIT) as BUREAU_LIMIT_SUM,
        avg(debt_to_credit) as BUREAU_UTIL_MEAN,
        sum(AMT_CREDIT_SUM_OVERDUE) as BUREAU_OVERDUE_SUM,
        max(AMT_CREDIT_MAX_OVERDUE) as BUREAU_MAX_OVERDUE,
        -- integer sums widen in some engines (DuckDB: HUGEINT); the feature is a BIGINT count
        cast(sum(CNT_CREDIT_PROLONG) as bigint) as BUREAU_PROLONG_SUM
    from credit_utilisation
    group by SK_ID_CURR

)

select * from final
