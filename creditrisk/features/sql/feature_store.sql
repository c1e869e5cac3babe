-- The feature store: one row per applicant (SK_ID_CURR) of `application`, with the label
-- (TARGET, NULL when unlabelled) and every feature group joined on. History groups are left
-- joined, so an applicant without rows in a history table gets NULL for that group's features.
-- Each group is the view `<file>_features`, registered from the SQL file of the same name.

with

applicants as (

    select * from application_features

),

bureau_credits as (

    select * from bureau_features

),

bureau_history as (

    select * from bureau_balance_features

),

previous_applications as (

    select * from previous_application_features

),

instalments as (

    select * from installments_payments_features

),

credit_cards as (

    select * from credit_card_balance_features

),

pos_cash_loans as (

    select * from pos_cash_balance_features

),

final as (

    select
        applicants.SK_ID_CURR,
        applicants.TARGET,

        -- application
        applicants.EXT_SOURCE_1,
        applicants.EXT_SOURCE_2,
        applicants.EXT_SOURCE_3,
        applicants.AMT_ANNUITY,
        applicants.AMT_CREDIT,
        applicants.AMT_GOODS_PRICE,
        applicants.AMT_INCOME_TOTAL,
        applicants.DAYS_BIRTH,
        applicants.DAYS_EMPLOYED,
        applicants.DAYS_REGISTRATION,
        applicants.DAYS_ID_PUBLISH,
        applicants.DAYS_LAST_PHONE_CHANGE,
        applicants.OWN_CAR_AGE,
        applicants.CODE_GENDER,
        applicants.CNT_CHILDREN,
        applicants.CNT_FAM_MEMBERS,
        applicants.REGION_RATING_CLIENT,
        applicants.REGION_RATING_CLIENT_W_CITY,
        applicants.REGION_POPULATION_RELATIVE,
        applicants.WEEKDAY_APPR_PROCESS_START,
        applicants.HOUR_APPR_PROCESS_START,
        applicants.NAME_INCOME_TYPE,
        applicants.NAME_EDUCATION_TYPE,
        applicants.NAME_HOUSING_TYPE,
        applicants.NAME_CONTRACT_TYPE,
        applicants.NAME_FAMILY_STATUS,
        applicants.REG_REGION_NOT_LIVE_REGION,
        applicants.REG_REGION_NOT_WORK_REGION,
        applicants.LIVE_REGION_NOT_WORK_REGION,
        applicants.REG_CITY_NOT_LIVE_CITY,
        applicants.REG_CITY_NOT_WORK_CITY,
        applicants.LIVE_CITY_NOT_WORK_CITY,
        applicants.OBS_30_CNT_SOCIAL_CIRCLE,
        applicants.DEF_30_CNT_SOCIAL_CIRCLE,
        applicants.OBS_60_CNT_SOCIAL_CIRCLE,
        applicants.DEF_60_CNT_SOCIAL_CIRCLE,
        applicants.AMT_REQ_CREDIT_BUREAU_HOUR,
        applicants.AMT_REQ_CREDIT_BUREAU_DAY,
        applicants.AMT_REQ_CREDIT_BUREAU_WEEK,
        applicants.AMT_REQ_CREDIT_BUREAU_MON,
        applicants.AMT_REQ_CREDIT_BUREAU_QRT,
        applicants.AMT_REQ_CREDIT_BUREAU_YEAR,
        applicants.FLAG_MOBIL,
        applicants.FLAG_EMP_PHONE,
        applicants.FLAG_WORK_PHONE,
        applicants.FLAG_CONT_MOBILE,
        applicants.FLAG_PHONE,
        applicants.FLAG_EMAIL,
        applicants.FLAG_OWN_CAR,
        applicants.FLAG_OWN_REALTY,
        applicants.FLAG_DOCUMENT_2,
        applicants.FLAG_DOCUMENT_3,
        applicants.FLAG_DOCUMENT_4,
        applicants.FLAG_DOCUMENT_5,
        applicants.FLAG_DOCUMENT_6,
        applicants.FLAG_DOCUMENT_7,
        applicants.FLAG_DOCUMENT_8,
        applicants.FLAG_DOCUMENT_9,
        applicants.FLAG_DOCUMENT_10,
        applicants.FLAG_DOCUMENT_11,
        applicants.FLAG_DOCUMENT_12,
        applicants.FLAG_DOCUMENT_13,
        applicants.FLAG_DOCUMENT_14,
        applicants.FLAG_DOCUMENT_15,
        applicants.FLAG_DOCUMENT_16,
        applicants.FLAG_DOCUMENT_17,
        applicants.FLAG_DOCUMENT_18,
        applicants.FLAG_DOCUMENT_19,
        applicants.FLAG_DOCUMENT_20,
        applicants.FLAG_DOCUMENT_21,
        applicants.TOT_MISSING_COUNT,
        applicants.AGE_YEARS,
        applicants.DAYS_EMPLOYED_ANOMALY,
        applicants.EMPLOYED_YEARS,
        applicants.EMPLOYMENT_YEARS_TO_AGE,
        applicants.PAYMENT_RATE,
        applicants.CREDIT_TO_INCOME,
        applicants.ANNUITY_TO_INCOME,
        applicants.GOODS_TO_CREDIT,
        applicants.INCOME_PER_PERSON,
        applicants.CHILDREN_RATIO,
        applicants.EXT_SOURCE_1_IS_MISSING,
        applicants.EXT_SOURCE_2_IS_MISSING,
        applicants.EXT_SOURCE_3_IS_MISSING,
        applicants.OWN_CAR_AGE_IS_MISSING,
        applicants.DOC_COUNT,
        applicants.CONTACT_COUNT,
        applicants.ADDR_MISMATCH_SUM,

        -- bureau
        bureau_credits.BUREAU_N_ACTIVE,
        bureau_credits.BUREAU_N_CLOSED,
        bureau_credits.BUREAU_LAST_CREDIT_DAYS,
        bureau_credits.BUREAU_LAST_UPDATE_DAYS,
        bureau_credits.BUREAU_TOTAL_DEBT,
        bureau_credits.BUREAU_TOTAL_CREDIT,
        bureau_credits.BUREAU_LIMIT_SUM,
        bureau_credits.BUREAU_UTIL_MEAN,
        bureau_credits.BUREAU_OVERDUE_SUM,
        bureau_credits.BUREAU_MAX_OVERDUE,
        bureau_credits.BUREAU_PROLONG_SUM,

        -- bureau_balance
        bureau_history.BB_DELINQ_SHARE_MEAN,
        bureau_history.BB_WORST_STATUS_MAX,
        bureau_history.BB_MONTHS_SINCE_LAST_DELINQ_MIN,

        -- previous_application
        previous_applications.PREV_TOTAL,
        previous_applications.PREV_APPROVED,
        previous_applications.PREV_REFUSED,
        previous_applications.PREV_CANCELLED,
        previous_applications.PREV_UNUSED,
        previous_applications.PREV_APP_CREDIT_RATIO_MEAN,
        previous_applications.PREV_DOWNPAYMENT_RATE_MEAN,
        previous_applications.PREV_CNT_PAYMENT_MEAN,
        previous_applications.PREV_LAST_DECISION_DAYS,
        previous_applications.PREV_EARLIEST_DECISION_DAYS,
        previous_applications.PREV_APPROVAL_RATE,
        previous_applications.PREV_REFUSED_RATE,

        -- installments_payments
        instalments.INSTAL_PAYMENT_RATIO_MEAN,
        instalments.INSTAL_PAYMENT_RATIO_STD,
        instalments.INSTAL_LATE_MEAN,
        instalments.INSTAL_LATE_MAX,
        instalments.INSTAL_LATE_SHARE,
        instalments.INSTAL_SEVERE_LATE_SHARE,

        -- credit_card_balance
        credit_cards.CC_UTIL_MEAN,
        credit_cards.CC_UTIL_MAX,
        credit_cards.CC_MINPAY_COVERAGE_MEAN,
        credit_cards.CC_MINPAY_MET_SHARE,
        credit_cards.CC_DPD_ANY_SHARE,
        credit_cards.CC_DPD_MAX,
        credit_cards.CC_CASH_RATIO_MEAN,

        -- pos_cash_balance
        pos_cash_loans.POS_DPD_ANY_SHARE,
        pos_cash_loans.POS_DPD_MAX,
        pos_cash_loans.POS_MONTHS_SINCE_LAST_ACTIVE

    from applicants
    left join bureau_credits
        on applicants.SK_ID_CURR = bureau_credits.SK_ID_CURR
    left join bureau_history
        on applicants.SK_ID_CURR = bureau_history.SK_ID_CURR
    left join previous_applications
        on applicants.SK_ID_CURR = previous_applications.SK_ID_CURR
    left join instalments
        on applicants.SK_ID_CURR = instalments.SK_ID_CURR
    left join credit_cards
        on applicants.SK_ID_CURR = credit_cards.SK_ID_CURR
    left join pos_cash_loans
        on applicants.SK_ID_CURR = pos_cash_loans.SK_ID_CURR

)

select * from final
