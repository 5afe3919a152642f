// Placeholder: this page is being built.

import { replace } from '../dom.js';
import { pageHeader } from '../ui.js';

export async function render(ctx) {
  replace(ctx.main, pageHeader('medias'));
}
