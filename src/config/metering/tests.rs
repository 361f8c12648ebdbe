//! Prices as the config states them: layers, bounds, cache ratios, built-in rows and media units.

use super::*;

fn stated(input: Option<f64>, output: Option<f64>) -> StatedPrices {
    StatedPrices { input, output, ..StatedPrices::default() }
}

#[test]
fn prices_come_from_params_then_model_info() {
    let entry = "model_list[0]";
    let full = CacheRatios::FULL_PRICE;
    let none = StatedPrices::default();
    assert_eq!(price(entry, [none, none, none], full).unwrap(), None);
    let both = price(entry, [stated(Some(0.5), None), stated(Some(0.1), Some(0.2)), none], full).unwrap().unwrap();
    let expected = Price {
        input: 0.5,
        output: 0.2,
        cache_read: 0.5,
        cache_write: 0.5,
        cache_write_1h: 0.5,
        media: MediaPrice::default(),
    };
    assert_eq!(both, expected);
    assert_eq!(both.cost(2, 10), 3.0);
    let err = price(entry, [stated(Some(-1.0), None), none, none], full).unwrap_err().to_string();
    assert!(err.contains("model_list[0].litellm_params.input_cost_per_token"), "{err}");
    assert!(price(entry, [stated(None, Some(f64::NAN)), none, none], full).is_err());
    let cache = StatedPrices { cache_read: Some(2.0), ..StatedPrices::default() };
    let err = price(entry, [none, cache, none], full).unwrap_err().to_string();
    assert!(err.contains("model_list[0].model_info.cache_read_input_token_cost"), "{err}");
}

/// #19 item 15: Anthropic's cache reads cost 0.1× and writes 1.25× the input price unless the config
/// prices them, and a config that does is obeyed.
#[test]
fn cached_prompt_tokens_are_priced_at_the_cache_prices() {
    let entry = "model_list[0]";
    let none = StatedPrices::default();
    let anthropic =
        price(entry, [stated(Some(0.001), Some(0.002)), none, none], CacheRatios::ANTHROPIC).unwrap().unwrap();
    assert!((anthropic.cache_read - 0.0001).abs() < 1e-12 && (anthropic.cache_write - 0.00125).abs() < 1e-12);
    let tokens = PricedTokens { prompt: 129, cache_read: 100, cache_write: 20, completion: 3, ..Default::default() };
    let expected = 9.0 * 0.001 + 100.0 * 0.0001 + 20.0 * 0.00125 + 3.0 * 0.002;
    assert!((anthropic.cost_of(tokens) - expected).abs() < 1e-12, "{}", anthropic.cost_of(tokens));
    let set = StatedPrices { cache_read: Some(0.0002), cache_write: Some(0.002), ..StatedPrices::default() };
    let priced = price(entry, [stated(Some(0.001), Some(0.002)), set, none], CacheRatios::ANTHROPIC).unwrap().unwrap();
    let expected = 9.0 * 0.001 + 100.0 * 0.0002 + 20.0 * 0.002 + 3.0 * 0.002;
    assert!((priced.cost_of(tokens) - expected).abs() < 1e-12);
    // Cache counts beyond the prompt are cut to it.
    let absurd = PricedTokens { prompt: 10, cache_read: 8, cache_write: 50, cache_write_1h: 70, completion: 0 };
    assert!((priced.cost_of(absurd) - (8.0 * 0.0002 + 2.0 * 0.002)).abs() < 1e-12, "{}", priced.cost_of(absurd));
    // An hour's cache writes cost 2× the input price unless the config says otherwise.
    let hour = PricedTokens { prompt: 129, cache_read: 100, cache_write: 20, cache_write_1h: 5, completion: 3 };
    let expected = 9.0 * 0.001 + 100.0 * 0.0001 + 15.0 * 0.00125 + 5.0 * 0.002 + 3.0 * 0.002;
    assert!((anthropic.cost_of(hour) - expected).abs() < 1e-12, "{}", anthropic.cost_of(hour));
}

fn priced(params: &str, info: &str) -> Pricing {
    let params: RawLitellmParams = serde_yaml::from_str(params).unwrap();
    let info: RawModelInfo = serde_yaml::from_str(info).unwrap();
    let (provider, model) = provider_table::resolve(&params.model).unwrap();
    pricing("model_list[0]", &params, &info, provider, model).unwrap()
}

/// #20 built-in prices: a deployment the config does not price gets the table's price; config prices
/// override it field by field; Azure deployments are priced by `base_model`.
#[test]
fn unpriced_deployments_take_the_builtin_price_and_config_overrides_it_per_field() {
    let builtin = priced("model: openai/gpt-4o", "{}");
    assert_eq!(builtin.source, PriceSource::Builtin);
    let price = builtin.price.unwrap();
    assert_eq!((price.input, price.output), (2.5e-6, 1e-5));
    assert!((price.cache_read - 1.25e-6).abs() < 1e-15, "{price:?}");
    let mixed = priced("{model: gpt-4o, input_cost_per_token: 0.000001}", "{}");
    assert_eq!(mixed.source, PriceSource::ConfigAndBuiltin);
    let price = mixed.price.unwrap();
    assert_eq!((price.input, price.output), (1e-6, 1e-5));
    // The table's cache discount (half the input price for gpt-4o) follows the config's input price.
    assert!((price.cache_read - 0.5e-6).abs() < 1e-15, "{price:?}");
    let info = "{output_cost_per_token: 0.000002, cache_read_input_token_cost: 0.0000001}";
    let config = priced("{model: openai/gpt-4o, input_cost_per_token: 0.000001}", info);
    assert_eq!(config.source, PriceSource::Config, "every field the table has is overridden");
    let unknown = priced("model: hosted_vllm/my-llama", "{}");
    assert_eq!((unknown.source, unknown.price), (PriceSource::None, None));
    let azure = priced("model: azure/prod-deployment", "base_model: azure/gpt-4o-mini");
    assert_eq!(azure.price.unwrap().input, 1.65e-7);
    assert!(priced("model: azure/prod-deployment", "{}").price.is_none());
    // Anthropic rows carry their cache prices; the hour-long write is the provider's 2× ratio.
    let claude = priced("model: anthropic/claude-3-5-haiku-20241022", "{}").price.unwrap();
    assert!((claude.cache_write - 1e-6).abs() < 1e-15 && (claude.cache_write_1h - 1.6e-6).abs() < 1e-15);
}

#[test]
fn token_counting_modes() {
    assert_eq!(token_counting(None).unwrap().count(3, 4), 7);
    assert_eq!(token_counting(Some("input")).unwrap().count(3, 4), 3);
    assert_eq!(token_counting(Some("output")).unwrap().count(3, 4), 4);
    assert!(token_counting(Some("all")).is_err());
}

/// #20 (media endpoints): images, seconds and characters are priced from either section, alone they make
/// a deployment priced, and an absurd price names its field.
#[test]
fn media_prices_are_read_and_priced_as_litellm_does() {
    let entry = "model_list[0]";
    let full = CacheRatios::FULL_PRICE;
    let params = StatedPrices {
        media: StatedMediaPrices { output_cost_per_image: Some(0.04), ..Default::default() },
        ..StatedPrices::default()
    };
    let info = StatedPrices {
        media: StatedMediaPrices {
            input_cost_per_second: Some(0.0001),
            input_cost_per_pixel: Some(1e-8),
            ..Default::default()
        },
        ..StatedPrices::default()
    };
    let priced = price(entry, [params, info, StatedPrices::default()], full)
        .unwrap()
        .expect("media prices alone make it priced");
    let used = MediaUse { images: 3, pixels: 3 * 1024 * 1024, audio_millis: 2500, characters: 10 };
    assert!((priced.media.cost(used) - (3.0 * 0.04 + 2.5 * 0.0001)).abs() < 1e-12, "per image wins over per pixel");
    let by_pixel = MediaPrice { per_pixel: 1e-8, ..MediaPrice::default() };
    assert!((by_pixel.cost(used) - 3.0 * 1024.0 * 1024.0 * 1e-8).abs() < 1e-12);
    assert_eq!(MediaUse::audio_of_bytes(24_000).audio_millis, 1500);
    let absurd = StatedPrices {
        media: StatedMediaPrices { input_cost_per_character: Some(f64::INFINITY), ..Default::default() },
        ..StatedPrices::default()
    };
    let err = price(entry, [absurd, StatedPrices::default(), StatedPrices::default()], full).unwrap_err().to_string();
    assert!(err.contains("litellm_params.input_cost_per_character"), "{err}");
}
