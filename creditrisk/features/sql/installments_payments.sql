-- Instalment-payment features: per previous credit (SK_ID_PREV) first, then per applicant.
--
-- Reads `installments_payments`, one row per instalment payment of an earlier Home Credit loan.
-- Rows join the applicant through their own SK_ID_CURR, so payments of a credit missing from
-- `previous_application` still count. Amounts in the loan currency, days relative to the
-- application (negative). Per row:
--   payment_ratio = AMT_PAYMENT / AMT_INSTALMENT (NULL when the instalment is 0 or NULL)
--   late_days     = DAYS_ENTRY_PAYMENT - DAYS_INSTALMENT (positive = paid late, in days)
-- A share counts every row of the credit; a row with NULL late_days counts as not late.

with

instalments as (

    select
        SK_ID_CURR,
        SK_ID_PREV,
        AMT_INSTALMENT,
        AMT_PAYMENT,
        DAYS_INSTALMENT,
        DAYS_ENTRY_PAYMENT
    from installments_payments

),

payment_behaviour as (

    select
        SK_ID_CURR,
        SK_ID_PREV,
        AMT_PAYMENT / nullif(AMT_INSTALMENT, 0) as payment_ratio,
        DAYS_ENTRY_PAYMENT - DAYS_INSTALMENT as late_days
    from instalments

),

per_credit as (

    select
        SK_ID_CURR,
        SK_ID_PREV,
        avg(payment_ratio) as payment_ratio_mean,
        -- sample standard deviation: NULL for a credit with a single payment ratio
        stddev_samp(payment_ratio) as payment_ratio_std,
        avg(late_days) as late_days_mean,
        max(late_days) as late_days_max,
        -- shares are means of a 0/1 indicator over all rows of the credit
        avg(cast(case when late_days > 0 then 1 else 0 end as double)) as late_share,
        -- more than 30 days late
        avg(cast(case when late_days > 30 then 1 else 0 end as double)) as severe_late_share
    from payment_behaviour
    group by SK_ID_CURR, SK_ID_PREV

),

final as (

    select
        SK_ID_CURR,
        avg(payment_ratio_mean) as INSTAL_PAYMENT_RATIO_MEAN,
        avg(payment_ratio_std) as INSTAL_PAYMENT_RATIO_STD,
        avg(late_days_mean) as INSTAL_LATE_MEAN,
        max(late_days_max) as INSTAL_LATE_MAX,
        avg(late_share) as INSTAL_LATE_SHARE,
        avg(severe_late_share) as INSTAL_SEVERE_LATE_SHARE
    from per_credit
    group by SK_ID_CURR

)

select * from final
